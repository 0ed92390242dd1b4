import random

from app.core.canary import Action, CanaryPlan, Phase, Rollout, judge_step, resumed
from app.core.serving_stats import VariantStats, one_request


def window(
    requests: int,
    errors: int = 0,
    latency_ms: float = 5.0,
    outcomes: list[float] | None = None,
    jitter: random.Random | None = None,
) -> VariantStats:
    stats = VariantStats()
    for i in range(requests):
        latency = latency_ms * (jitter.lognormvariate(0, 0.5) if jitter else 1.0)
        stats = stats.merge(one_request(latency, ok=i >= errors, at=float(i)))
    for value in outcomes or []:
        stats = stats.with_outcome(value)
    return stats


PLAN = CanaryPlan(bake_time_s=30, min_requests=50)


def test_hold_while_baking_then_advance() -> None:
    assert judge_step(PLAN, window(200), window(60), 10).action is Action.HOLD
    advance = judge_step(PLAN, window(200), window(60), 31)
    assert advance.action is Action.ADVANCE
    assert advance.evidence["canary"]["requests"] == 60


def test_hold_for_traffic() -> None:
    judgement = judge_step(PLAN, window(200), window(10), 300)
    assert judgement.action is Action.HOLD and "waiting for traffic" in judgement.reason


def test_errors_roll_back_once_significant() -> None:
    judgement = judge_step(PLAN, window(2000, errors=20), window(300, errors=60), 1)
    assert judgement.action is Action.ROLLBACK and "error rate" in judgement.reason
    test = judgement.evidence["tests"]["errors"]
    assert test["decision"] == "breach" and test["interval"][0] > PLAN.max_error_rate_increase
    few = judge_step(PLAN, window(200), window(10, errors=2), 1)  # under the minimum sample
    assert few.action is Action.HOLD
    early = judge_step(PLAN, window(200, errors=1), window(40, errors=3), 1)  # not yet clear
    assert early.action is Action.HOLD and early.evidence["tests"]["errors"]["decision"] == "ok"


def test_a_bad_canary_never_advances_before_its_breach_is_significant() -> None:
    plan = CanaryPlan(bake_time_s=2, min_requests=10)
    unclear = judge_step(plan, window(40), window(20, errors=6), 3)  # 30% vs 0%, 20 requests
    assert unclear.action is Action.HOLD and "not yet significant" in unclear.reason
    # doubt does not hold forever: 20x the step's requests without a significant breach
    close = judge_step(plan, window(2000, errors=100), window(390, errors=28), 3)  # 7.2% vs 5%
    assert close.action is Action.HOLD, close.reason
    settled = judge_step(plan, window(2000, errors=100), window(420, errors=30), 3)
    assert settled.action is Action.ADVANCE, settled.reason


def test_the_last_step_compares_with_the_baselines_history() -> None:
    plan = CanaryPlan(steps=(30.0, 100.0), bake_time_s=2, min_requests=10)
    history = window(400)
    # the 100 percent step: the baseline serves nothing new, its record stands in
    judgement = judge_step(plan, VariantStats(), window(200, errors=100), 3, 0.01, history)
    assert judgement.action is Action.ROLLBACK and "error rate" in judgement.reason
    assert judgement.evidence["baseline_window"] == "history"
    healthy = judge_step(plan, VariantStats(), window(200), 3, 0.01, history)
    assert healthy.action is Action.ADVANCE


def test_a_baseline_without_traffic_holds_the_canary_to_the_allowed_increase() -> None:
    plan = CanaryPlan(steps=(50.0, 100.0), bake_time_s=1, min_requests=10)
    # the baseline served 17 requests before the canary took everything
    judgement = judge_step(plan, VariantStats(), window(60, errors=30), 2, 0.01, window(17))
    assert judgement.action is Action.ROLLBACK and "error rate" in judgement.reason
    alone = judge_step(plan, VariantStats(), window(60, errors=30), 2, 0.01, VariantStats())
    assert alone.action is Action.ROLLBACK


def test_latency_is_judged_on_distributions_not_on_a_p95_of_a_few_requests() -> None:
    rng = random.Random(7)
    # the case: a canary no slower than its baseline, 25 requests in: no rollback
    same = judge_step(PLAN, window(500, jitter=rng), window(25, jitter=rng), 1)
    assert same.action is Action.HOLD
    slow = judge_step(PLAN, window(500, jitter=rng), window(100, latency_ms=50, jitter=rng), 1)
    assert slow.action is Action.ROLLBACK and "slower" in slow.reason
    assert slow.evidence["tests"]["latency"]["threshold_ms"] > 0


def test_quality_drop_rolls_back_only_beyond_the_allowed_drop() -> None:
    good, bad = [1.0] * 200, [0.0] * 200
    worse = judge_step(PLAN, window(300, outcomes=good), window(300, outcomes=bad), 40)
    assert worse.action is Action.ROLLBACK and "quality" in worse.reason
    same = judge_step(PLAN, window(100, outcomes=[1.0] * 40), window(100, outcomes=[1.0] * 40), 40)
    assert same.action is Action.ADVANCE


def test_an_aa_canary_is_rarely_rolled_back() -> None:
    rng = random.Random(11)
    rollbacks = 0
    for _ in range(200):  # identical versions: 3% errors, same latency, same quality
        base = window(
            1000,
            errors=sum(rng.random() < 0.03 for _ in range(1000)),
            jitter=rng,
            outcomes=[float(rng.random() < 0.8) for _ in range(200)],
        )
        canary = window(
            200,
            errors=sum(rng.random() < 0.03 for _ in range(200)),
            jitter=rng,
            outcomes=[float(rng.random() < 0.8) for _ in range(60)],
        )
        rollbacks += judge_step(PLAN, base, canary, 31).action is Action.ROLLBACK
    assert rollbacks <= 2  # alpha 1% per rollout (this is one look per run)


def test_a_restarted_controller_never_counts_lost_requests_as_negative() -> None:
    # CI's case: the traffic actor died after a canary step began and before the stats
    # were stored again; the baseline's window (stats now minus the step's snapshot) went
    # below zero in the slow buckets and a healthy canary was rolled back on latency
    rng = random.Random(5)
    stored = {"v1": window(2000, jitter=rng), "v3": window(100, jitter=rng)}
    lost = window(30, latency_ms=20.0)  # the baseline's, after the last store
    rollout = Rollout(
        model="m",
        baseline="v1",
        canary="v3",
        plan=PLAN,
        step_index=0,
        step_started_at=0.0,
        phase=Phase.PROGRESSING,
        baseline_snapshot=stored["v1"].merge(lost),
        canary_snapshot=stored["v3"],
        started_by="engineer",
    )
    after = {  # the traffic since the restart
        "v1": stored["v1"].merge(window(600, jitter=rng)),
        "v3": stored["v3"].merge(window(200, jitter=rng)),
    }

    def judged(rollout: Rollout) -> Action:
        baseline = after["v1"].minus(rollout.baseline_snapshot)
        canary = after["v3"].minus(rollout.canary_snapshot)
        return judge_step(PLAN, baseline, canary, 31, baseline_history=after["v1"]).action

    assert min(after["v1"].minus(rollout.baseline_snapshot).latency) < 0  # the bug
    assert judged(rollout) is Action.ROLLBACK
    restarted = resumed(rollout, stored)
    assert restarted.baseline_snapshot == stored["v1"]  # moved back to what was stored
    assert restarted.canary_snapshot == stored["v3"]  # was not ahead: unchanged
    assert min(after["v1"].minus(restarted.baseline_snapshot).latency) >= 0
    assert judged(restarted) is Action.ADVANCE
