import numpy as np

from app.core.abtest import (
    AbTestConfig,
    Arm,
    VerdictStatus,
    confidence_interval,
    judge,
    mixture_ratio,
    srm_p_value,
)
from app.core.serving_stats import Outcomes


def outcomes(values: np.ndarray) -> Outcomes:
    return Outcomes(int(values.size), float(values.sum()), float((values * values).sum()))


def arms(
    base: np.ndarray, cand: np.ndarray, assigned: tuple[int, int] | None = None
) -> tuple[Arm, Arm]:
    na, nb = assigned or (base.size, cand.size)
    return Arm("v1", na, 0.5, outcomes(base)), Arm("v2", nb, 0.5, outcomes(cand))


def test_sample_ratio_mismatch_blocks_any_verdict() -> None:
    assert srm_p_value((Arm("a", 5_000, 0.5, Outcomes()), Arm("b", 5_050, 0.5, Outcomes()))) > 0.3
    rng = np.random.default_rng(0)
    a, b = arms(
        rng.binomial(1, 0.5, 500).astype(float),
        rng.binomial(1, 0.9, 500).astype(float),
        assigned=(6_000, 4_000),
    )
    verdict = judge(a, b)
    assert verdict.status is VerdictStatus.SAMPLE_RATIO_MISMATCH
    assert verdict.winner is None and not verdict.srm_ok


def test_an_underpowered_test_says_so() -> None:
    a, b = arms(np.ones(20), np.zeros(20))
    verdict = judge(a, b, AbTestConfig(min_outcomes=100))
    assert verdict.status is VerdictStatus.UNDERPOWERED and verdict.winner is None
    assert "underpowered" in verdict.reason


def test_a_truly_better_candidate_wins() -> None:
    rng = np.random.default_rng(1)
    a, b = arms(
        rng.binomial(1, 0.70, 1_000).astype(float), rng.binomial(1, 0.90, 1_000).astype(float)
    )
    verdict = judge(a, b)
    assert verdict.status is VerdictStatus.WINNER and verdict.winner == "v2"
    assert verdict.effect is not None and 0.15 < verdict.effect < 0.25
    low, high = verdict.confidence_interval or (0, 0)
    assert low > 0 and low < 0.2 < high
    assert verdict.p_value <= 0.05 and verdict.srm_ok
    worse = judge(b, a)
    assert worse.status is VerdictStatus.WINNER and worse.winner == "v2"  # the baseline


def test_the_p_value_is_a_running_minimum() -> None:
    rng = np.random.default_rng(2)
    a, b = arms(rng.normal(0, 1, 200), rng.normal(0, 1, 200))
    assert judge(a, b, previous_p_value=0.2).p_value <= 0.2


def test_the_interval_is_where_the_ratio_stays_below_one_over_alpha() -> None:
    effect, variance, tau, alpha = 0.08, 0.0004, 0.1, 0.05
    low, high = confidence_interval(effect, variance, tau, alpha)
    for edge in (low, high):
        assert abs(mixture_ratio(effect - edge, variance, tau) - 1 / alpha) < 1e-6
    assert mixture_ratio(0.0, variance, tau) < 1


def test_peeking_at_every_look_keeps_false_winners_under_alpha() -> None:
    """A/A over 300 seeded experiments, looked at every 50 outcomes up to 2,000 per arm."""
    rng = np.random.default_rng(42)
    config = AbTestConfig(alpha=0.05, tau=0.1, min_outcomes=50)
    false_winners = 0
    for _ in range(300):
        base = rng.binomial(1, 0.8, 2_000).astype(float)
        cand = rng.binomial(1, 0.8, 2_000).astype(float)
        p_value = 1.0
        for n in range(50, 2_001, 50):
            verdict = judge(*arms(base[:n], cand[:n]), config, previous_p_value=p_value)
            p_value = verdict.p_value
            if verdict.status is VerdictStatus.WINNER:
                false_winners += 1
                break
    assert false_winners / 300 <= config.alpha
