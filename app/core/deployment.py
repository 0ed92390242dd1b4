"""Deployment requests turned into routing tables (and canary rollouts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from app.core.abtest import Verdict
from app.core.canary import CanaryPlan, Phase, Rollout
from app.core.feedback import PredictionRef
from app.core.routing import (
    Backend,
    Role,
    RoutingTable,
    Strategy,
    Variant,
    check_weights,
)
from app.core.serving_stats import VariantStats
from app.errors import Conflict, ErrorCode, InvalidInput


@dataclass(frozen=True)
class Arm:
    """A version and its share of traffic in an A/B deployment."""

    version: int
    weight: float
    backend: Backend = Backend.RAY


@dataclass(frozen=True)
class DeploySpec:
    """What a caller asks for.

    Attributes:
        strategy: replace, canary, ab or shadow.
        version: the version for replace, canary and shadow.
        arms: the versions and weights of an A/B test (the first is the baseline).
        canary: the canary's steps, bake time and thresholds.
        shadow_percent: the share of requests mirrored to a shadow version.
    """

    strategy: Strategy
    version: int | None = None
    backend: Backend = Backend.RAY
    arms: tuple[Arm, ...] = ()
    canary: CanaryPlan = field(default_factory=CanaryPlan)
    shadow_percent: float = 100.0

    def versions(self) -> tuple[int, ...]:
        """Every version the deployment would serve."""
        if self.strategy is Strategy.AB:
            return tuple(a.version for a in self.arms)
        return () if self.version is None else (self.version,)


def variant_name(version: int, backend: Backend) -> str:
    """A variant's name: `v3`, or `v3-triton` off the default backend."""
    return f"v{version}" if backend is Backend.RAY else f"v{version}-{backend.value}"


def plan(
    model: str,
    spec: DeploySpec,
    current: RoutingTable | None,
    revision: int,
    now: datetime,
    salt: str,
    actor: str,
    stats: dict[str, VariantStats] | None = None,
) -> tuple[RoutingTable, Rollout | None]:
    """The new routing table (and canary rollout) for `spec`.

    Variants that served before and are not part of the new table stay in it with weight 0,
    so that their draining can be observed. A new A/B test gets a new salt (its own sticky
    assignment); other strategies keep the current one.

    Raises:
        InvalidInput: the request is inconsistent (weights, missing version).
        Conflict: canary or shadow without a current deployment to compare with.
    """
    stats = stats or {}
    if spec.strategy is Strategy.REPLACE:
        table = _replace(model, spec, current, revision, now, salt)
        return table, None
    if spec.strategy is Strategy.AB:
        return _ab(model, spec, current, revision, now, salt), None
    if current is None or not current.serving():
        raise Conflict(
            ErrorCode.NOTHING_TO_COMPARE,
            f"{spec.strategy} needs a current deployment of {model!r} to compare with.",
            model=model,
        )
    if spec.strategy is Strategy.SHADOW:
        return _shadow(spec, current, revision, now), None
    return _canary(spec, current, revision, now, actor, stats)


def _require_version(spec: DeploySpec) -> int:
    if spec.version is None:
        raise InvalidInput.for_field("version", f"{spec.strategy} needs a version")
    return spec.version


def _retired(current: RoutingTable | None, keep: set[str]) -> list[Variant]:
    if current is None:
        return []
    return [
        Variant(v.name, v.version, 0.0, Role.PRIMARY, v.backend)
        for v in current.variants
        if v.name not in keep and v.role is not Role.SHADOW
    ]


def _replace(
    model: str,
    spec: DeploySpec,
    current: RoutingTable | None,
    revision: int,
    now: datetime,
    salt: str,
) -> RoutingTable:
    version = _require_version(spec)
    primary = Variant(
        variant_name(version, spec.backend), version, 100.0, Role.PRIMARY, spec.backend
    )
    variants = (primary, *_retired(current, {primary.name}))
    return RoutingTable(
        model,
        revision,
        current.salt if current else salt,
        Strategy.REPLACE,
        variants,
        updated_at=now,
    )


def _ab(
    model: str,
    spec: DeploySpec,
    current: RoutingTable | None,
    revision: int,
    now: datetime,
    salt: str,
) -> RoutingTable:
    if len(spec.arms) < 2:
        raise InvalidInput.for_field("variants", "an A/B test needs at least two versions")
    arms = [
        Variant(
            variant_name(a.version, a.backend),
            a.version,
            a.weight,
            Role.PRIMARY if i == 0 else Role.CANDIDATE,
            a.backend,
        )
        for i, a in enumerate(spec.arms)
    ]
    check_weights(arms)
    variants = (*arms, *_retired(current, {a.name for a in arms}))
    return RoutingTable(
        model, revision, salt, Strategy.AB, variants, updated_at=now, experiment=salt[:12]
    )


def _shadow(spec: DeploySpec, current: RoutingTable, revision: int, now: datetime) -> RoutingTable:
    version = _require_version(spec)
    shadow = Variant(variant_name(version, spec.backend), version, 0.0, Role.SHADOW, spec.backend)
    if current.variant(shadow.name) is not None and current.variant(shadow.name) != shadow:
        raise InvalidInput.for_field("version", f"{shadow.name} already serves traffic")
    if not 0 < spec.shadow_percent <= 100:
        raise InvalidInput.for_field("percent", "must be in (0, 100]")
    others = tuple(v for v in current.variants if v.role is not Role.SHADOW)
    return RoutingTable(
        current.model,
        revision,
        current.salt,
        current.strategy,
        (*others, shadow),
        spec.shadow_percent,
        now,
        current.experiment,
    )


def _canary(
    spec: DeploySpec,
    current: RoutingTable,
    revision: int,
    now: datetime,
    actor: str,
    stats: dict[str, VariantStats],
) -> tuple[RoutingTable, Rollout]:
    version = _require_version(spec)
    _check_steps(spec.canary)
    baseline = max(current.serving(), key=lambda v: v.weight)
    canary = Variant(
        variant_name(version, spec.backend),
        version,
        spec.canary.steps[0],
        Role.CANDIDATE,
        spec.backend,
    )
    if canary.name == baseline.name:
        raise InvalidInput.for_field("version", "the canary must differ from the baseline")
    base = Variant(
        baseline.name, baseline.version, 100.0 - canary.weight, Role.PRIMARY, baseline.backend
    )
    variants = (base, canary, *_retired(current, {base.name, canary.name}))
    table = RoutingTable(
        current.model, revision, current.salt, Strategy.CANARY, variants, updated_at=now
    )
    rollout = Rollout(
        model=current.model,
        baseline=base.name,
        canary=canary.name,
        plan=spec.canary,
        step_index=0,
        step_started_at=now.timestamp(),
        phase=Phase.PROGRESSING,
        baseline_snapshot=stats.get(base.name, VariantStats()),
        canary_snapshot=stats.get(canary.name, VariantStats()),
        started_by=actor,
    )
    return table, rollout


def _check_steps(plan: CanaryPlan) -> None:
    steps = plan.steps
    if not steps or any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
        raise InvalidInput.for_field("steps", "increasing percentages in (0, 100]")
    if steps[-1] != 100:
        raise InvalidInput.for_field("steps", "the last step must be 100")


def step_table(table: RoutingTable, rollout: Rollout, revision: int, now: datetime) -> RoutingTable:
    """The table at the rollout's current step (or at its end)."""
    weight = rollout.weight
    if rollout.phase is Phase.ROLLED_BACK:
        weight = 0.0
    variants = []
    for v in table.variants:
        if v.name == rollout.canary:
            role = Role.PRIMARY if rollout.phase is Phase.COMPLETED else Role.CANDIDATE
            variants.append(Variant(v.name, v.version, weight, role, v.backend))
        elif v.name == rollout.baseline:
            variants.append(Variant(v.name, v.version, 100.0 - weight, Role.PRIMARY, v.backend))
        else:
            variants.append(v)
    strategy = Strategy.REPLACE if rollout.phase is not Phase.PROGRESSING else Strategy.CANARY
    return RoutingTable(
        table.model,
        revision,
        table.salt,
        strategy,
        tuple(variants),
        table.shadow_percent,
        now,
        table.experiment,
    )


@dataclass(frozen=True)
class ServingBatch:
    """What one ingress replica reports in one flush: stats increments per variant, its
    requests in flight, prediction references for feedback, and shadow comparisons."""

    replica: str
    stats: dict[str, dict[str, VariantStats]] = field(default_factory=dict)
    inflight: dict[str, dict[str, int]] = field(default_factory=dict)
    refs: tuple[PredictionRef, ...] = ()
    shadow: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)


@dataclass(frozen=True)
class DeploymentView:
    """A model's deployment as the API shows it."""

    table: RoutingTable
    rollout: Rollout | None
    stats: dict[str, VariantStats]
    inflight: dict[str, int]
    shadow: dict[str, tuple[int, int]]
    verdicts: tuple[Verdict, ...]


def placements(spec: DeploySpec) -> tuple[tuple[int, Backend], ...]:
    """Every (version, backend) pair the deployment would serve."""
    if spec.strategy is Strategy.AB:
        return tuple((a.version, a.backend) for a in spec.arms)
    return () if spec.version is None else ((spec.version, spec.backend),)
