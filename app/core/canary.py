"""The canary controller's decisions: hold, advance to the next step, or roll back.

A canary moves through traffic steps (e.g. 5, 25, 50, 100 percent). At every tick the
canary's window (its requests since the step began) is compared with the baseline's
window: a breach on error rate, latency or (when feedback exists) quality rolls back at
once; after the step's bake time with enough canary traffic and no breach, it advances;
the last step completes the rollout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from app.core.audit import EventType
from app.core.serving_stats import VariantStats
from app.errors import Conflict, ErrorCode


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
    plan: CanaryPlan, baseline: VariantStats, canary: VariantStats, elapsed_s: float
) -> Judgement:
    """Decide on the current step from both windows (stats since the step began)."""
    evidence = _evidence(baseline, canary, elapsed_s)
    breach = _breach(plan, baseline, canary)
    if breach:
        return Judgement(Action.ROLLBACK, breach, evidence)
    if elapsed_s < plan.bake_time_s:
        return Judgement(
            Action.HOLD, f"baking ({elapsed_s:.0f}/{plan.bake_time_s:.0f} s)", evidence
        )
    if canary.requests < plan.min_requests:
        return Judgement(
            Action.HOLD,
            f"waiting for traffic ({canary.requests}/{plan.min_requests} canary requests)",
            evidence,
        )
    return Judgement(Action.ADVANCE, "healthy for the whole bake time", evidence)


def _breach(plan: CanaryPlan, baseline: VariantStats, canary: VariantStats) -> str:
    increase = canary.error_rate - baseline.error_rate
    if canary.errors >= plan.min_errors and increase > plan.max_error_rate_increase:
        return (
            f"error rate {canary.error_rate:.1%} vs baseline {baseline.error_rate:.1%} "
            f"(+{increase:.1%} > +{plan.max_error_rate_increase:.1%} allowed)"
        )
    samples = min(sum(canary.latency), sum(baseline.latency))
    canary_p95, baseline_p95 = canary.percentile_ms(0.95), baseline.percentile_ms(0.95)
    if samples >= plan.min_latency_samples and canary_p95 and baseline_p95:
        if canary_p95 > plan.max_latency_ratio * baseline_p95:
            return (
                f"p95 latency {canary_p95:.1f} ms vs baseline {baseline_p95:.1f} ms "
                f"(> {plan.max_latency_ratio:g}x allowed)"
            )
    ours, theirs = canary.outcomes, baseline.outcomes
    if min(ours.n, theirs.n) >= plan.min_outcomes and ours.mean is not None:
        assert theirs.mean is not None
        if ours.mean < theirs.mean - plan.max_quality_drop:
            return (
                f"quality {ours.mean:.3f} vs baseline {theirs.mean:.3f} "
                f"(drop > {plan.max_quality_drop:g} allowed)"
            )
    return ""


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


def refuse_during_rollout(rollout: Rollout | None) -> None:
    """A deployment may not change while a canary rolls out (Conflict)."""
    if rollout is not None and rollout.phase is Phase.PROGRESSING:
        raise Conflict(
            ErrorCode.ROLLOUT_IN_PROGRESS,
            f"A canary of {rollout.canary} is rolling out; wait for it or undeploy.",
            model=rollout.model,
            canary=rollout.canary,
        )
