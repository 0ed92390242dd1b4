from app.core.canary import Action, CanaryPlan, judge_step
from app.core.serving_stats import VariantStats, one_request


def window(
    requests: int, errors: int = 0, latency_ms: float = 5.0, outcomes: list[float] | None = None
) -> VariantStats:
    stats = VariantStats()
    for i in range(requests):
        stats = stats.merge(one_request(latency_ms, ok=i >= errors, at=float(i)))
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


def test_errors_roll_back_at_once() -> None:
    judgement = judge_step(PLAN, window(200, errors=1), window(40, errors=8), 1)
    assert judgement.action is Action.ROLLBACK and "error rate" in judgement.reason
    few = judge_step(PLAN, window(200), window(10, errors=2), 1)  # under min_errors
    assert few.action is Action.HOLD


def test_latency_and_quality_breaches() -> None:
    slow = judge_step(PLAN, window(100, latency_ms=5), window(100, latency_ms=50), 1)
    assert slow.action is Action.ROLLBACK and "latency" in slow.reason
    worse = judge_step(PLAN, window(100, outcomes=[1.0] * 40), window(100, outcomes=[0.0] * 40), 40)
    assert worse.action is Action.ROLLBACK and "quality" in worse.reason
    same = judge_step(PLAN, window(100, outcomes=[1.0] * 40), window(100, outcomes=[1.0] * 40), 40)
    assert same.action is Action.ADVANCE
