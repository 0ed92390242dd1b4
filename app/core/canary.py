"""The canary controller's decisions: hold, advance to the next step, or roll back.

A canary moves through traffic steps (e.g. 5, 25, 50, 100 percent). At every tick the
canary's window (its requests since the step began) is compared with the baseline's
window by three one-sided tests, each a confidence sequence that stays valid when looked
at every tick (the mixture SPRT of `app.core.abtest`):

- errors: the canary's error rate minus the baseline's;
- latency: the share of requests slower than `max_latency_ratio` x the baseline's p95,
  the canary's minus the baseline's (distributions compared, not one p95 of a few dozen
  requests);
- quality (with feedback): the baseline's mean outcome minus the canary's.

A test rolls back only when the lower bound of its difference is above its practical
threshold (`max_error_rate_increase`, `LATENCY_SHARE_MARGIN`, `max_quality_drop`) and
it has its minimum sample. The false-rollback rate of a whole rollout is at most `alpha`
(Bonferroni over the three tests of every step). After the step's bake time, with enough
canary traffic and no rollback, the rollout advances; the last step completes it. Every
judgement carries its numbers (estimate, interval, threshold, sample) for the audit log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from app.core.abtest import confidence_interval
from app.core.audit import EventType
from app.core.serving_stats import LATENCY_BOUNDS_MS, VariantStats, no_later_than
from app.errors import Conflict, ErrorCode

LATENCY_SHARE_MARGIN = 0.05  # 5 more points of the canary's requests that slow
MIN_SAMPLE = 20  # requests per side before the error and latency tests look
DOUBT_LIMIT = 20  # a doubtful step holds until min_requests x this canary requests, then
# advances: its tests found no significant breach in a sample this large (without a limit,
# an estimate that stays near its threshold held a healthy canary forever)
_TAU_SHARES = 0.1  # the mixing scale of the error and latency tests (shares)
_TAU_QUALITY = 0.05  # ... and of the quality test (outcome units)


class Action(StrEnum):
    """What the controller does now."""

    HOLD = "hold"
    ADVANCE = "advance"
    ROLLBACK = "rollback"


class Phase(StrEnum):
    """Where a rollout stands."""

    PROGRESSING = "progressing"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"


@dataclass(frozen=True)
class CanaryPlan:
    """Steps, bake time and the breach thresholds of a canary rollout."""

    steps: tuple[float, ...] = (5.0, 25.0, 50.0, 100.0)
    bake_time_s: float = 60.0
    min_requests: int = 50
    max_error_rate_increase: float = 0.02
    min_errors: int = 3
    max_latency_ratio: float = 1.5
    min_latency_samples: int = 20
    max_quality_drop: float = 0.02
    min_outcomes: int = 30
    promote_on_success: bool = False


@dataclass(frozen=True)
class Judgement:
    """The decision and the numbers it rests on."""

    action: Action
    reason: str
    evidence: dict[str, Any]


def judge_step(
    plan: CanaryPlan,
    baseline: VariantStats,
    canary: VariantStats,
    elapsed_s: float,
    alpha: float = 0.01,
    baseline_history: VariantStats | None = None,
) -> Judgement:
    """Decide on the current step from both windows (stats since the step began).

    A step advances only after its bake time, with at least `min_requests` (and
    `MIN_SAMPLE`) canary requests, and while no test's estimate is beyond its threshold
    (a bad canary whose breach is not yet significant holds) or, once the step has
    `DOUBT_LIMIT` times those requests, while no breach is significant.

    Args:
        alpha: the false-rollback rate of the whole rollout.
        baseline_history: the baseline's record before this step, compared with when the
            step gives the baseline too little traffic (the 100 percent step gives none).
    """
    compared_with = "step"
    if baseline.requests < MIN_SAMPLE and baseline_history is not None:
        baseline, compared_with = baseline_history, "history"
    level = alpha / (3 * len(plan.steps))  # every test of every step
    tests = {
        "errors": _errors(plan, baseline, canary, level),
        "latency": _latency(plan, baseline, canary, level),
        "quality": _quality(plan, baseline, canary, level),
    }
    evidence = {
        **_evidence(baseline, canary, elapsed_s),
        "baseline_window": compared_with,
        "tests": tests,
        "alpha": alpha,
    }
    breach = next((t for t in tests.values() if t["decision"] == "breach"), None)
    if breach is not None:
        return Judgement(Action.ROLLBACK, str(breach["reason"]), evidence)
    if elapsed_s < plan.bake_time_s:
        return Judgement(
            Action.HOLD, f"baking ({elapsed_s:.0f}/{plan.bake_time_s:.0f} s)", evidence
        )
    needed = max(plan.min_requests, MIN_SAMPLE)
    if canary.requests < needed:
        return Judgement(
            Action.HOLD,
            f"waiting for traffic ({canary.requests}/{needed} canary requests)",
            evidence,
        )
    unclear = next(
        (t for t in tests.values() if t["decision"] == "ok" and t["estimate"] > t["threshold"]),
        None,
    )
    if unclear is not None and canary.requests < needed * DOUBT_LIMIT:
        return Judgement(
            Action.HOLD, f"not advancing, not yet significant: {unclear['reason']}", evidence
        )
    return Judgement(Action.ADVANCE, "healthy for the whole bake time", evidence)


def _errors(
    plan: CanaryPlan, baseline: VariantStats, canary: VariantStats, level: float
) -> dict[str, Any]:
    # a baseline with little or no traffic still counts (an empty one as error-free: the
    # canary is then held to the allowed increase on its own)
    enough = canary.requests >= MIN_SAMPLE and canary.errors >= plan.min_errors
    return _shares(
        "error rate",
        (canary.errors, canary.requests),
        (baseline.errors, baseline.requests),
        plan.max_error_rate_increase,
        level,
        enough,
    )


def _latency(
    plan: CanaryPlan, baseline: VariantStats, canary: VariantStats, level: float
) -> dict[str, Any]:
    p95 = baseline.percentile_ms(0.95)
    samples = min(sum(baseline.latency), sum(canary.latency))
    if p95 is None or samples < max(MIN_SAMPLE, plan.min_latency_samples):
        return {"decision": "insufficient", "samples": samples}
    threshold = plan.max_latency_ratio * p95
    test = _shares(
        f"share slower than {threshold:.1f} ms ({plan.max_latency_ratio:g}x the baseline p95)",
        (_slower(canary, threshold), sum(canary.latency)),
        (_slower(baseline, threshold), sum(baseline.latency)),
        LATENCY_SHARE_MARGIN,
        level,
        True,
    )
    return {**test, "threshold_ms": threshold, "baseline_p95_ms": p95}


def _quality(
    plan: CanaryPlan, baseline: VariantStats, canary: VariantStats, level: float
) -> dict[str, Any]:
    ours, theirs = canary.outcomes, baseline.outcomes
    if min(ours.n, theirs.n) < plan.min_outcomes or ours.mean is None or theirs.mean is None:
        return {"decision": "insufficient", "outcomes": [theirs.n, ours.n]}
    drop = theirs.mean - ours.mean
    variance = max(ours.variance, 1e-9) / ours.n + max(theirs.variance, 1e-9) / theirs.n
    low, high = confidence_interval(drop, variance, _TAU_QUALITY, level)
    breach = low > plan.max_quality_drop
    reason = (
        f"quality {ours.mean:.3f} vs baseline {theirs.mean:.3f}: drop {drop:.3f} "
        f"(interval {low:.3f} to {high:.3f}) beyond the allowed {plan.max_quality_drop:g}"
    )
    return {
        "decision": "breach" if breach else "ok",
        "reason": reason,
        "estimate": drop,
        "interval": [low, high],
        "threshold": plan.max_quality_drop,
        "outcomes": [theirs.n, ours.n],
    }


def _shares(
    what: str,
    canary: tuple[int, int],
    baseline: tuple[int, int],
    margin: float,
    level: float,
    enough: bool,
) -> dict[str, Any]:
    """The one-sided test of a share's increase (canary minus baseline) beyond `margin`."""
    (x_c, n_c), (x_b, n_b) = canary, baseline
    if not enough or n_c == 0:
        return {"decision": "insufficient", "counts": [x_b, n_b, x_c, n_c]}
    rate_c, rate_b = x_c / n_c, (x_b / n_b if n_b else 0.0)
    # variances from smoothed rates: no zero variance when nothing happened yet
    smooth_c, smooth_b = (x_c + 0.5) / (n_c + 1), (x_b + 0.5) / (n_b + 1)
    variance = smooth_c * (1 - smooth_c) / n_c
    if n_b:
        variance += smooth_b * (1 - smooth_b) / n_b
    increase = rate_c - rate_b
    low, high = confidence_interval(increase, variance, _TAU_SHARES, level)
    reason = (
        f"{what} {rate_c:.1%} vs baseline {rate_b:.1%}: +{increase:.1%} "
        f"(interval {low:+.1%} to {high:+.1%}) beyond the allowed +{margin:.1%}"
    )
    return {
        "decision": "breach" if low > margin else "ok",
        "reason": reason,
        "estimate": increase,
        "interval": [low, high],
        "threshold": margin,
        "counts": [x_b, n_b, x_c, n_c],
    }


def _slower(stats: VariantStats, threshold_ms: float) -> int:
    """Requests in buckets entirely above `threshold_ms`."""
    return sum(
        count
        for count, low in zip(stats.latency[1:], LATENCY_BOUNDS_MS[:-1], strict=True)
        if low >= threshold_ms
    )


def _evidence(baseline: VariantStats, canary: VariantStats, elapsed_s: float) -> dict[str, Any]:
    def side(stats: VariantStats) -> dict[str, Any]:
        return {
            "requests": stats.requests,
            "errors": stats.errors,
            "error_rate": round(stats.error_rate, 6),
            "p95_ms": stats.percentile_ms(0.95),
            "quality": stats.outcomes.mean,
            "outcomes": stats.outcomes.n,
        }

    return {"elapsed_s": round(elapsed_s, 1), "baseline": side(baseline), "canary": side(canary)}


@dataclass(frozen=True)
class Rollout:
    """A canary rollout in progress (or finished): where it stands and since when."""

    model: str
    baseline: str
    canary: str
    plan: CanaryPlan
    step_index: int
    step_started_at: float
    phase: Phase
    baseline_snapshot: VariantStats
    canary_snapshot: VariantStats
    started_by: str
    reason: str = ""

    @property
    def weight(self) -> float:
        """The canary's share of traffic in the current step (percent)."""
        return self.plan.steps[self.step_index]

    @property
    def last_step(self) -> bool:
        """Whether the current step is the final one."""
        return self.step_index == len(self.plan.steps) - 1


def advance(
    rollout: Rollout, action: Action, reason: str, stats: Mapping[str, VariantStats], now: float
) -> tuple[Rollout, EventType]:
    """The rollout after a judgement that did not hold: rolled back, completed (on its last
    step) or at its next step (with the stats it is judged from then), and its audit kind."""
    if action is Action.ROLLBACK:
        return replace(rollout, phase=Phase.ROLLED_BACK, reason=reason), (
            EventType.ROLLOUT_ROLLED_BACK
        )
    if rollout.last_step:
        return replace(rollout, phase=Phase.COMPLETED, reason=reason), (EventType.ROLLOUT_COMPLETED)
    return replace(
        rollout,
        step_index=rollout.step_index + 1,
        step_started_at=now,
        baseline_snapshot=stats.get(rollout.baseline, VariantStats()),
        canary_snapshot=stats.get(rollout.canary, VariantStats()),
        reason=reason,
    ), EventType.ROLLOUT_STEP


def resumed(rollout: Rollout, stored: Mapping[str, VariantStats]) -> Rollout:
    """The rollout as a restarted controller judges it: its step's snapshots no later than
    the stored stats (what came after the last store was lost, and a window from a
    snapshot ahead of the stats would count it as negative: a baseline share below zero
    once rolled a healthy canary back)."""
    start = {rollout.baseline: rollout.baseline_snapshot, rollout.canary: rollout.canary_snapshot}
    capped = no_later_than(start, stored)
    return replace(
        rollout, baseline_snapshot=capped[rollout.baseline], canary_snapshot=capped[rollout.canary]
    )


def refuse_during_rollout(rollout: Rollout | None) -> None:
    """A deployment may not change while a canary rolls out (Conflict)."""
    if rollout is not None and rollout.phase is Phase.PROGRESSING:
        raise Conflict(
            ErrorCode.ROLLOUT_IN_PROGRESS,
            f"A canary of {rollout.canary} is rolling out; wait for it or undeploy.",
            model=rollout.model,
            canary=rollout.canary,
        )
