"""A/B verdicts that stay valid when looked at continuously.

The test is the mixture sequential probability ratio test (mSPRT) of Johari, Pekelis and
Walsh ("Always valid inference", 2017) on the difference of mean outcomes between a
candidate and a baseline, with a normal mixing distribution N(0, tau^2) over the effect:

    Lambda_n = sqrt(V / (V + tau^2)) * exp(tau^2 * d^2 / (2 V (V + tau^2)))

where d is the observed difference of means and V its variance (s_a^2/n_a + s_b^2/n_b).
The always-valid p-value is the running minimum of 1/Lambda over every look, and
{theta : Lambda_n(theta) < 1/alpha} is an always-valid confidence sequence for the effect;
peeking after every request does not inflate the false-winner rate above alpha.

Each verdict also says how far the test is: the planned sample size per arm (the outcomes
each arm needs for `power` to find `minimum_effect`, for this always-valid test at one
look, with the arms' outcome variance so far) and the power at the sample it has.

A sample-ratio-mismatch check (chi-square of assignment counts against the configured
weights) guards the randomisation: with a mismatch there is no verdict at all. Until both
arms have enough outcomes the test says it is underpowered instead of naming a winner.
Outcomes are "higher is better" (a correct prediction is 1, a wrong one 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from scipy import stats

from app.core.serving_stats import Outcomes

SRM_ALPHA = 0.001  # the usual threshold: a mismatch this unlikely means broken assignment
_MIN_VARIANCE = 1e-9


class VerdictStatus(StrEnum):
    """What the test can say now."""

    WINNER = "winner"
    NO_DIFFERENCE_YET = "no_difference_yet"
    UNDERPOWERED = "underpowered"
    SAMPLE_RATIO_MISMATCH = "sample_ratio_mismatch"


@dataclass(frozen=True)
class Arm:
    """One side of the comparison: its name, assignments, expected share and outcomes."""

    name: str
    assigned: int
    expected_share: float
    outcomes: Outcomes


@dataclass(frozen=True)
class AbTestConfig:
    """Parameters of the test."""

    alpha: float = 0.05
    tau: float = 0.1
    min_outcomes: int = 100
    minimum_effect: float = 0.05
    power: float = 0.8


@dataclass(frozen=True)
class Verdict:
    """The state of an A/B comparison at one look."""

    status: VerdictStatus
    baseline: str
    candidate: str
    winner: str | None
    effect: float | None
    confidence_interval: tuple[float, float] | None
    p_value: float
    likelihood_ratio: float
    srm_ok: bool
    srm_p_value: float
    alpha: float
    baseline_mean: float | None
    candidate_mean: float | None
    baseline_outcomes: int
    candidate_outcomes: int
    reason: str
    planned_n: int | None = None
    power: float | None = None


def srm_p_value(arms: tuple[Arm, ...]) -> float:
    """Chi-square goodness of fit of the assignment counts to the expected shares."""
    total = sum(a.assigned for a in arms)
    if total == 0 or len(arms) < 2:
        return 1.0
    shares = sum(a.expected_share for a in arms)
    expected = [total * a.expected_share / shares for a in arms]
    statistic = sum((a.assigned - e) ** 2 / e for a, e in zip(arms, expected, strict=True) if e)
    return float(stats.chi2.sf(statistic, len(arms) - 1))


def mixture_ratio(effect: float, variance: float, tau: float) -> float:
    """The mSPRT mixture likelihood ratio of H1 (effect != 0) against H0 (effect = 0)."""
    tau2 = tau * tau
    log_ratio = 0.5 * math.log(variance / (variance + tau2)) + (
        tau2 * effect * effect / (2 * variance * (variance + tau2))
    )
    return math.exp(min(log_ratio, 700.0))


def confidence_interval(
    effect: float, variance: float, tau: float, alpha: float
) -> tuple[float, float]:
    """The always-valid (1 - alpha) confidence interval of the effect at this look."""
    tau2 = tau * tau
    radius = math.sqrt(
        variance
        * (variance + tau2)
        / tau2
        * (2 * math.log(1 / alpha) + math.log((variance + tau2) / variance))
    )
    return effect - radius, effect + radius


def power_at(n: int, effect: float, variance: float, tau: float, alpha: float) -> float:
    """The chance that the test finds `effect` with `n` outcomes per arm (outcome variance
    `variance` in each arm), at one look: the observed difference must cross the
    mixture's threshold, in either direction."""
    if n <= 0:
        return 0.0
    v = 2 * max(variance, _MIN_VARIANCE) / n
    tau2 = tau * tau
    crossing = math.sqrt(
        2 * v * (v + tau2) / tau2 * (math.log(1 / alpha) + 0.5 * math.log((v + tau2) / v))
    )
    sd = math.sqrt(v)
    return float(
        stats.norm.sf((crossing - effect) / sd) + stats.norm.cdf((-crossing - effect) / sd)
    )


def planned_n(effect: float, variance: float, tau: float, alpha: float, power: float) -> int:
    """The outcomes per arm for `power` to find `effect` (see `power_at`)."""
    high = 2
    while power_at(high, effect, variance, tau, alpha) < power:
        high *= 2
        if high > 100_000_000:
            return high
    low = high // 2
    while low + 1 < high:
        middle = (low + high) // 2
        if power_at(middle, effect, variance, tau, alpha) >= power:
            high = middle
        else:
            low = middle
    return high


def judge(
    baseline: Arm,
    candidate: Arm,
    config: AbTestConfig = AbTestConfig(),
    previous_p_value: float = 1.0,
    srm_arms: tuple[Arm, ...] | None = None,
) -> Verdict:
    """The verdict at this look.

    Args:
        baseline, candidate: the two arms compared.
        config: alpha, mixing scale tau and the minimum outcomes per arm.
        previous_p_value: the always-valid p-value after the previous look (1 at the first);
            the new one is the running minimum.
        srm_arms: every arm of the experiment for the mismatch check (default: the two).
    """
    srm_p = srm_p_value(srm_arms or (baseline, candidate))
    a, b = baseline.outcomes, candidate.outcomes
    spread = _pooled_variance(a, b)
    plan = planned_n(config.minimum_effect, spread, config.tau, config.alpha, config.power)
    now = power_at(min(a.n, b.n), config.minimum_effect, spread, config.tau, config.alpha)

    def verdict(
        status: VerdictStatus,
        reason: str,
        *,
        effect: float | None = None,
        interval: tuple[float, float] | None = None,
        p_value: float = previous_p_value,
        ratio: float = 0.0,
        winner: str | None = None,
    ) -> Verdict:
        return Verdict(
            status=status,
            baseline=baseline.name,
            candidate=candidate.name,
            winner=winner,
            effect=effect,
            confidence_interval=interval,
            p_value=p_value,
            likelihood_ratio=ratio,
            srm_ok=srm_p >= SRM_ALPHA,
            srm_p_value=srm_p,
            alpha=config.alpha,
            baseline_mean=a.mean,
            candidate_mean=b.mean,
            baseline_outcomes=a.n,
            candidate_outcomes=b.n,
            reason=reason,
            planned_n=plan,
            power=round(now, 4),
        )

    if srm_p < SRM_ALPHA:
        return verdict(
            VerdictStatus.SAMPLE_RATIO_MISMATCH,
            f"assignment counts do not match the weights (p={srm_p:.2g}): "
            "the randomisation is broken, no verdict",
        )
    if min(a.n, b.n) < config.min_outcomes:
        return verdict(
            VerdictStatus.UNDERPOWERED,
            f"underpowered: needs {config.min_outcomes} outcomes per arm, has {a.n} and {b.n} "
            f"(planned: {plan} per arm for an effect of {config.minimum_effect:g})",
        )
    assert a.mean is not None and b.mean is not None
    effect = b.mean - a.mean
    variance = max(a.variance, _MIN_VARIANCE) / a.n + max(b.variance, _MIN_VARIANCE) / b.n
    ratio = mixture_ratio(effect, variance, config.tau)
    p_value = min(previous_p_value, 1.0, 1.0 / ratio)
    interval = confidence_interval(effect, variance, config.tau, config.alpha)
    summary = f"effect {effect:+.4g} (CI {interval[0]:+.4g} to {interval[1]:+.4g}), p={p_value:.3g}"
    if p_value <= config.alpha and effect != 0:
        winner = candidate.name if effect > 0 else baseline.name
        return verdict(
            VerdictStatus.WINNER,
            f"{winner} is better: {summary}",
            effect=effect,
            interval=interval,
            p_value=p_value,
            ratio=ratio,
            winner=winner,
        )
    return verdict(
        VerdictStatus.NO_DIFFERENCE_YET,
        f"no significant difference yet: {summary}",
        effect=effect,
        interval=interval,
        p_value=p_value,
        ratio=ratio,
    )


def _pooled_variance(a: Outcomes, b: Outcomes) -> float:
    """The outcome variance of both arms together; a coin's (0.25) before there is any."""
    pooled = a.merge(b)
    return pooled.variance if pooled.n >= 2 else 0.25
