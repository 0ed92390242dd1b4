"""Registered models and versions as values, and the decisions the registry makes on them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.core.audit import AuditEvent, canonical
from app.core.gates import (
    Approval,
    Check,
    Evidence,
    ProductionFacts,
    PromotionFacts,
    PromotionPolicy,
    evaluate,
)
from app.core.lifecycle import SINGULAR_STAGES, ModelStage, check_transition
from app.core.semver import ArtifactFacts, Registered, SemVer
from app.errors import Conflict, ErrorCode


@dataclass(frozen=True)
class Lineage:
    """Where a version comes from."""

    run_id: str | None
    experiment_id: str | None
    datasets: tuple[Mapping[str, Any], ...] = ()
    feature_service: str | None = None
    code_version: str | None = None
    parent_version: int | None = None
    artifact_digest: str = ""
    source_uri: str = ""
    parent_run_id: str | None = None
    training: Mapping[str, Any] = field(default_factory=dict)
    evaluation: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return {
            "evaluation": dict(self.evaluation),
            "parent_run_id": self.parent_run_id,
            "training": dict(self.training),
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "datasets": [dict(d) for d in self.datasets],
            "feature_service": self.feature_service,
            "code_version": self.code_version,
            "parent_version": self.parent_version,
            "artifact_digest": self.artifact_digest,
            "source_uri": self.source_uri,
        }


@dataclass(frozen=True)
class Registration:
    """A request to register the model a run logged as a new version."""

    model: str
    run_id: str
    artifact_path: str = "model"
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    parent_version: int | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def metadata_digest(self) -> str:
        """A digest of the version's metadata (description and tags)."""
        text = canonical({"description": self.description, "tags": dict(self.tags)})
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ModelVersion:
    """A registered version and where it stands."""

    model: str
    version: int
    semver: SemVer
    stage: ModelStage
    facts: ArtifactFacts
    metrics: Mapping[str, float]
    lineage: Lineage
    description: str
    tags: Mapping[str, str]
    registered_at: datetime
    registered_by: str
    stage_changed_at: datetime

    def registered(self) -> Registered:
        """As the semantic-version rule sees it."""
        return Registered(self.version, self.semver, self.facts)


@dataclass(frozen=True)
class RegisteredModel:
    """A model. `policy` is the one set through the API; None means the configured one."""

    name: str
    description: str
    created_at: datetime
    created_by: str
    policy: PromotionPolicy | None = None


@dataclass(frozen=True)
class RegistryState:
    """Everything the registry holds, as loaded from its database."""

    models: Mapping[str, RegisteredModel] = field(default_factory=dict)
    versions: Mapping[str, Mapping[int, ModelVersion]] = field(default_factory=dict)
    approvals: Mapping[str, tuple[Approval, ...]] = field(default_factory=dict)
    tails: Mapping[str, AuditEvent] = field(default_factory=dict)


@dataclass(frozen=True)
class RegistryWrite:
    """One atomic change to the registry's database."""

    model: RegisteredModel | None = None
    versions: tuple[ModelVersion, ...] = ()
    approvals: tuple[tuple[str, Approval], ...] = ()
    events: tuple[AuditEvent, ...] = ()


@dataclass(frozen=True)
class StageChange:
    """One version moving from one stage to another, and why."""

    version: int
    source: ModelStage
    target: ModelStage
    reason: str


@dataclass(frozen=True)
class PromotionDecision:
    """The outcome of a promotion request: the checks, and the moves they allow."""

    target: ModelStage
    checks: tuple[Check, ...]
    changes: tuple[StageChange, ...]

    @property
    def approved(self) -> bool:
        """Every check passed or was waived."""
        return all(check.ok for check in self.checks)


@dataclass(frozen=True)
class ModelView:
    """A model as the API shows it."""

    model: RegisteredModel
    versions: tuple[ModelVersion, ...]
    approvals: tuple[Approval, ...]
    policy: PromotionPolicy
    policy_source: str


@dataclass(frozen=True)
class PromotionResult:
    """A successful promotion: the version as it now stands and every move made."""

    version: ModelVersion
    decision: PromotionDecision


def decide_promotion(
    model: str,
    candidate: ModelVersion,
    target: ModelStage,
    facts: PromotionFacts,
    policy: PromotionPolicy,
    superseded: Iterable[tuple[ModelVersion, tuple[Check, ...]]] = (),
) -> PromotionDecision:
    """Evaluate the gates of `candidate`'s move to `target`.

    Args:
        superseded: for a move to production, each version now in production with the
            checks of its own move to archived; those that pass are archived with it.

    Raises:
        Conflict: `target` is not the next stage of the candidate (`illegal_transition`).
    """
    check_transition(model, candidate.version, candidate.stage, target)
    checks = evaluate(target, facts, policy)
    changes = [StageChange(candidate.version, candidate.stage, target, "promoted")]
    for old, archive_checks in superseded:
        if all(check.ok for check in archive_checks):
            reason = f"superseded by version {candidate.version}"
            changes.append(StageChange(old.version, old.stage, ModelStage.ARCHIVED, reason))
    return PromotionDecision(target, checks, tuple(changes))


def refusal(model: str, version: int, decision: PromotionDecision) -> Conflict:
    """The error a refused promotion answers with: every check, its inputs and reason."""
    failing = [c.gate.value for c in decision.checks if not c.ok]
    return Conflict(
        ErrorCode.GATES_FAILED,
        f"Version {version} of {model!r} cannot move to {decision.target}: "
        f"{', '.join(failing)} failed. Nothing was changed.",
        model=model,
        version=version,
        target=decision.target.value,
        checks=[check_payload(c) for c in decision.checks],
    )


def check_payload(check: Check) -> dict[str, Any]:
    """A check as plain JSON (for evidence, audit and problem bodies)."""
    return {
        "gate": check.gate.value,
        "passed": check.passed,
        "waived": check.waived,
        "reason": check.reason,
        "inputs": dict(check.inputs),
    }


def holders(versions: Iterable[ModelVersion]) -> dict[ModelStage, list[int]]:
    """The versions in each stage, newest first."""
    held: dict[ModelStage, list[int]] = {stage: [] for stage in ModelStage}
    for version in sorted(versions, key=lambda v: v.version, reverse=True):
        held[version.stage].append(version.version)
    return held


def aliases(versions: Iterable[ModelVersion]) -> dict[str, int]:
    """MLflow aliases mirroring the singular stages: each points at its newest holder."""
    held = holders(versions)
    return {stage.value: held[stage][0] for stage in SINGULAR_STAGES if held[stage]}


@dataclass(frozen=True)
class ModelSource:
    """A model logged by a run, as the registry needs to know it."""

    uri: str
    run_id: str
    experiment_id: str
    signature: Mapping[str, Any] | None
    artifact_digest: str
    metrics: Mapping[str, float]
    datasets: tuple[Mapping[str, Any], ...] = ()
    feature_service: str | None = None
    code_version: str | None = None
    parent_run_id: str | None = None
    evaluation: Mapping[str, str] = field(default_factory=dict)


def new_version(
    request: Registration,
    source: ModelSource,
    number: int,
    semver: SemVer,
    facts: ArtifactFacts,
    parent: int | None,
    actor: str,
    now: datetime,
) -> ModelVersion:
    """The version a registration creates: in development, with its lineage (the run, its
    datasets and feature service, the code, the parent version and run, how it was
    trained)."""
    lineage = Lineage(
        run_id=source.run_id,
        experiment_id=source.experiment_id,
        datasets=source.datasets,
        feature_service=source.feature_service,
        code_version=source.code_version,
        parent_version=request.parent_version or parent,
        artifact_digest=source.artifact_digest,
        source_uri=source.uri,
        parent_run_id=source.parent_run_id,
        training=dict(request.provenance),
        evaluation=dict(source.evaluation),
    )
    return ModelVersion(
        model=request.model,
        version=number,
        semver=semver,
        stage=ModelStage.DEVELOPMENT,
        facts=facts,
        metrics=dict(source.metrics),
        lineage=lineage,
        description=request.description,
        tags=dict(request.tags),
        registered_at=now,
        registered_by=actor,
        stage_changed_at=now,
    )


def superseded(
    versions: Iterable[ModelVersion],
    candidate: ModelVersion,
    policy: PromotionPolicy,
    traffic: Mapping[int, Evidence | None],
) -> list[tuple[ModelVersion, tuple[Check, ...]]]:
    """The production versions a promotion of `candidate` to production supersedes, each
    with the checks of its own move to archived (drained? `traffic` says)."""
    newcomer = ProductionFacts(candidate.version, candidate.metrics)
    out = []
    for old in versions:
        if old.stage is ModelStage.PRODUCTION and old.version != candidate.version:
            facts = PromotionFacts(
                old.version,
                old.facts.artifact_digest,
                old.metrics,
                production=newcomer,
                traffic=traffic.get(old.version),
            )
            out.append((old, evaluate(ModelStage.ARCHIVED, facts, policy)))
    return out
