"""Wire models of registered models, versions, promotions, approvals and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from app.api.schemas.keys import TagKey
from app.api.schemas.policy import PromotionPolicyBody
from app.core.audit import AuditEvent, ChainVerification
from app.core.gates import Approval, Check
from app.core.lifecycle import ModelStage
from app.core.registry import (
    ModelVersion,
    ModelView,
    PromotionResult,
    Registration,
    StageChange,
    holders,
)
from app.jobs.spec import ModelName

SEMVER_RULE = (
    "Semantic versions: the first version is 1.0.0; a different input or output signature "
    "than the latest version bumps MAJOR; the same signature with a new artifact bumps MINOR; "
    "the same artifact again is refused as a duplicate (409 `duplicate_version`) unless only "
    "its metadata (description, tags) changed, which bumps PATCH."
)


class ModelVersionCreate(BaseModel):
    """Register the model a run logged as a new version (created in `development`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "description": SEMVER_RULE,
            "example": {
                "name": "churn-classifier",
                "run_id": "4930bb060c6c496f83fd0c6e647b8438",
                "artifact_path": "model",
                "description": "MLP, 2 hidden layers",
            },
        },
    )

    name: ModelName
    run_id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,255}$", description="The run that logged the model."
    )
    artifact_path: str = Field(
        default="model",
        min_length=1,
        max_length=250,
        description="The model's name in the run (`mlflow.<flavor>.log_model(name=...)`).",
    )
    description: str = Field(default="", max_length=5000)
    tags: dict[TagKey, Annotated[str, Field(max_length=5000)]] = Field(
        default_factory=dict, max_length=50
    )
    parent_version: int | None = Field(
        default=None, ge=1, description="The version this one derives from (default: latest)."
    )

    def to_domain(self) -> Registration:
        """The domain request."""
        return Registration(
            model=self.name,
            run_id=self.run_id,
            artifact_path=self.artifact_path,
            description=self.description,
            tags=self.tags,
            parent_version=self.parent_version,
        )


class LineagePublic(BaseModel):
    """Where a version comes from."""

    run_id: str | None
    experiment_id: str | None
    datasets: list[dict[str, Any]] = Field(description="Datasets the run consumed.")
    feature_service: str | None
    code_version: str | None
    parent_version: int | None
    artifact_digest: str = Field(description="SHA-256 of the model's files.")
    source_uri: str
    parent_run_id: str | None = Field(default=None, description="The tuning run of a trial.")
    training: dict[str, Any] = Field(
        default_factory=dict,
        description="How it was trained: search space, searcher and seed of a tuning job.",
    )


class CheckOut(BaseModel):
    """One gate's verdict."""

    gate: str
    passed: bool
    waived: bool = Field(description="Failed, but the policy waives this gate (recorded).")
    reason: str
    inputs: dict[str, Any]

    @classmethod
    def of(cls, check: Check) -> CheckOut:
        """Wire form."""
        return cls(
            gate=check.gate.value,
            passed=check.passed,
            waived=check.waived,
            reason=check.reason,
            inputs=dict(check.inputs),
        )


class VersionEvent(BaseModel):
    """Something that happened to a version."""

    seq: int
    at: datetime
    actor: str
    type: str
    detail: dict[str, Any]


class ModelVersionPublic(BaseModel):
    """A registered version: stage, semantic version, run, metrics and lineage."""

    model: str
    version: int = Field(description="MLflow's version number.")
    semver: str = Field(description=SEMVER_RULE)
    stage: ModelStage
    run_id: str | None
    metrics: dict[str, float]
    lineage: LineagePublic
    description: str
    tags: dict[str, str]
    registered_at: datetime
    registered_by: str
    stage_changed_at: datetime
    mlflow_ui: str

    @classmethod
    def of(cls, v: ModelVersion, mlflow_prefix: str) -> ModelVersionPublic:
        """Wire form."""
        return cls(
            model=v.model,
            version=v.version,
            semver=str(v.semver),
            stage=v.stage,
            run_id=v.lineage.run_id,
            metrics=dict(v.metrics),
            lineage=LineagePublic(**v.lineage.as_dict()),
            description=v.description,
            tags=dict(v.tags),
            registered_at=v.registered_at,
            registered_by=v.registered_by,
            stage_changed_at=v.stage_changed_at,
            mlflow_ui=f"{mlflow_prefix}/#/models/{v.model}/versions/{v.version}",
        )


class ModelVersionHistory(ModelVersionPublic):
    """A version with its gate results and who did what to it."""

    gate_results: list[CheckOut] = Field(
        description="The checks of the version's last promotion attempt (passed or refused)."
    )
    events: list[VersionEvent]

    @classmethod
    def with_history(
        cls, v: ModelVersion, events: tuple[AuditEvent, ...], mlflow_prefix: str
    ) -> ModelVersionHistory:
        """Wire form with the version's events."""
        own = [e for e in events if e.version == v.version]
        gated = [e for e in own if "checks" in e.payload]
        checks = [CheckOut(**c) for c in gated[-1].payload["checks"]] if gated else []
        base = ModelVersionPublic.of(v, mlflow_prefix).model_dump()
        return cls(
            **base,
            gate_results=checks,
            events=[
                VersionEvent(
                    seq=e.seq, at=e.at, actor=e.actor, type=e.type.value, detail=dict(e.payload)
                )
                for e in own
            ],
        )


class ApprovalPublic(BaseModel):
    """An approval, bound to the artifact digest it approved."""

    model: str
    version: int
    digest: str
    approver: str
    at: datetime
    comment: str

    @classmethod
    def of(cls, model: str, a: Approval) -> ApprovalPublic:
        """Wire form."""
        return cls(
            model=model,
            version=a.version,
            digest=a.digest,
            approver=a.approver,
            at=a.at,
            comment=a.comment,
        )


class ModelPublic(BaseModel):
    """A registered model, with the versions in each stage."""

    name: str
    description: str
    created_at: datetime
    created_by: str
    stages: dict[ModelStage, list[int]] = Field(description="Versions in each stage, newest first.")
    latest_version: int | None
    latest_semver: str | None
    policy: PromotionPolicyBody
    policy_source: str = Field(description="`api` (set through the API), `config` or `default`.")
    mlflow_ui: str

    @classmethod
    def of(cls, view: ModelView, mlflow_prefix: str) -> ModelPublic:
        """Wire form."""
        latest = max(view.versions, key=lambda v: v.semver, default=None)
        return cls(
            name=view.model.name,
            description=view.model.description,
            created_at=view.model.created_at,
            created_by=view.model.created_by,
            stages=holders(view.versions),
            latest_version=latest.version if latest else None,
            latest_semver=str(latest.semver) if latest else None,
            policy=PromotionPolicyBody.of(view.policy),
            policy_source=view.policy_source,
            mlflow_ui=f"{mlflow_prefix}/#/models/{view.model.name}",
        )


class ModelDetail(ModelPublic):
    """A model with every version and approval."""

    versions: list[ModelVersionPublic]
    approvals: list[ApprovalPublic]

    @classmethod
    def detail(cls, view: ModelView, mlflow_prefix: str) -> ModelDetail:
        """Wire form."""
        return cls(
            **ModelPublic.of(view, mlflow_prefix).model_dump(),
            versions=[ModelVersionPublic.of(v, mlflow_prefix) for v in view.versions],
            approvals=[ApprovalPublic.of(view.model.name, a) for a in view.approvals],
        )


class PromoteRequest(BaseModel):
    """Move a version to the next stage of the lifecycle through the gates of that edge."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"version": 3, "to": "staging"}}
    )

    version: int = Field(ge=1)
    to: ModelStage = Field(
        description="The next stage of the version: staging, production or archived."
    )


class StageChangeOut(BaseModel):
    """One version's move."""

    version: int
    from_stage: ModelStage = Field(serialization_alias="from")
    to: ModelStage
    reason: str

    @classmethod
    def of(cls, change: StageChange) -> StageChangeOut:
        """Wire form."""
        return cls(
            version=change.version, from_stage=change.source, to=change.target, reason=change.reason
        )


class PromotionPublic(BaseModel):
    """A promotion that passed its gates: the moves made and the evidence stored."""

    version: ModelVersionPublic
    changes: list[StageChangeOut]
    checks: list[CheckOut]

    @classmethod
    def of(cls, result: PromotionResult, mlflow_prefix: str) -> PromotionPublic:
        """Wire form."""
        return cls(
            version=ModelVersionPublic.of(result.version, mlflow_prefix),
            changes=[StageChangeOut.of(c) for c in result.decision.changes],
            checks=[CheckOut.of(c) for c in result.decision.checks],
        )


class ApprovalCreate(BaseModel):
    """Approve a version for production (needs the `approver` role)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"version": 3, "comment": "LGTM"}}
    )

    version: int = Field(ge=1)
    comment: str = Field(default="", max_length=2000)


class AuditEventOut(BaseModel):
    """One audit event, with its place in the hash chain."""

    seq: int
    at: datetime
    actor: str
    type: str
    version: int | None
    payload: dict[str, Any]
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, e: AuditEvent) -> AuditEventOut:
        """Wire form."""
        return cls(
            seq=e.seq,
            at=e.at,
            actor=e.actor,
            type=e.type.value,
            version=e.version,
            payload=dict(e.payload),
            prev_hash=e.prev_hash,
            hash=e.hash,
        )


class ChainOut(BaseModel):
    """The result of re-computing the hash chain."""

    valid: bool
    events_checked: int
    broken_at: int | None = Field(description="The first event that fails verification.")
    reason: str

    @classmethod
    def of(cls, v: ChainVerification) -> ChainOut:
        """Wire form."""
        return cls(
            valid=v.valid, events_checked=v.events_checked, broken_at=v.broken_at, reason=v.reason
        )


class AuditPublic(BaseModel):
    """A model's audit log, its verification, and (with `as_of`) the stages at that time."""

    model: str
    verification: ChainOut
    as_of: datetime | None = None
    stages_as_of: dict[ModelStage, list[int]] | None = None
    events: list[AuditEventOut]
