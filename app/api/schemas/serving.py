"""Wire models of deployments, predictions and feedback."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.core.abtest import Verdict
from app.core.canary import CanaryPlan, Rollout
from app.core.deployment import Arm, DeploymentView, DeploySpec
from app.core.feedback import Feedback
from app.core.routing import Backend, Role, Strategy
from app.core.serving_stats import VariantStats
from app.jobs.spec import ModelName


class ArmIn(BaseModel):
    """One version of an A/B test and its share of traffic (percent)."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    weight: float = Field(ge=0, le=100)
    backend: Backend = Backend.RAY


class DeployRequest(BaseModel):
    """Deploy versions of a registered model.

    - `replace`: `version` takes 100% of traffic.
    - `ab`: `variants` with fixed weights summing to 100 (the first is the baseline); a new
      experiment, with its own sticky assignment of request keys.
    - `canary`: `version` gets the `steps` in turn (percent), each for `bake_time_s`, and is
      compared with the current version: a breach rolls it back by itself.
    - `shadow`: `version` receives a copy of `percent`% of requests; answers are discarded.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"strategy": "replace", "version": 1},
                {
                    "strategy": "ab",
                    "variants": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}],
                },
                {"strategy": "canary", "version": 3, "steps": [5, 25, 50, 100], "bake_time_s": 60},
                {"strategy": "shadow", "version": 3, "percent": 100},
            ]
        },
    )

    strategy: Strategy
    version: int | None = Field(default=None, ge=1, description="For replace, canary, shadow.")
    backend: Backend = Field(default=Backend.RAY, description="Where the model runs.")
    variants: list[ArmIn] = Field(default_factory=list, max_length=10, description="For ab.")
    steps: list[float] = Field(
        default=[5.0, 25.0, 50.0, 100.0],
        min_length=1,
        max_length=20,
        description="Canary traffic steps in percent, ending at 100.",
    )
    bake_time_s: float = Field(default=60.0, ge=0, le=86_400)
    min_requests: int = Field(default=50, ge=1, description="Canary requests per step.")
    max_error_rate_increase: float = Field(default=0.02, ge=0, le=1)
    max_latency_ratio: float = Field(default=1.5, ge=1)
    max_quality_drop: float = Field(default=0.02, ge=0)
    promote_on_success: bool = Field(
        default=False, description="Ask the registry to promote the canary when it completes."
    )
    percent: float = Field(default=100.0, gt=0, le=100, description="Shadow share of requests.")

    @model_validator(mode="after")
    def _fields_fit_the_strategy(self) -> Self:
        if self.strategy is Strategy.AB:
            if len(self.variants) < 2:
                raise ValueError("an ab deployment needs at least two variants")
            llm_arms = {a.backend is Backend.VLLM for a in self.variants}
            if len(llm_arms) > 1:
                raise ValueError(
                    "an ab deployment cannot mix vllm variants (answering /llm/v1) with "
                    "ray or triton ones (answering /predict)"
                )
        elif self.version is None:
            raise ValueError(f"a {self.strategy.value} deployment needs a version")
        return self

    def to_domain(self) -> DeploySpec:
        """The domain request."""
        return DeploySpec(
            strategy=self.strategy,
            version=self.version,
            backend=self.backend,
            arms=tuple(Arm(a.version, a.weight, a.backend) for a in self.variants),
            canary=CanaryPlan(
                steps=tuple(self.steps),
                bake_time_s=self.bake_time_s,
                min_requests=self.min_requests,
                max_error_rate_increase=self.max_error_rate_increase,
                max_latency_ratio=self.max_latency_ratio,
                max_quality_drop=self.max_quality_drop,
                promote_on_success=self.promote_on_success,
            ),
            shadow_percent=self.percent,
        )


class VariantOut(BaseModel):
    """One variant: its routing and what it has served."""

    name: str
    version: int
    role: Role
    weight: float = Field(description="Percent of traffic (shadows: 0, see shadow_percent).")
    backend: Backend
    requests: int
    errors: int
    error_rate: float
    latency_ms: dict[str, float | None] = Field(description="p50, p95, p99 (histogram bounds).")
    in_flight: int
    last_request_at: datetime | None
    quality: float | None = Field(description="Mean feedback outcome (higher is better).")
    outcomes: int
    shadow_agreement: float | None = Field(
        default=None, description="Shadows: share of rows equal to the primary's answer."
    )


class RolloutOut(BaseModel):
    """A canary rollout."""

    phase: str
    baseline: str
    canary: str
    steps: list[float]
    step: int
    weight: float
    step_started_at: datetime
    bake_time_s: float
    reason: str
    started_by: str

    @classmethod
    def of(cls, r: Rollout) -> RolloutOut:
        """Wire form."""
        return cls(
            phase=r.phase.value,
            baseline=r.baseline,
            canary=r.canary,
            steps=list(r.plan.steps),
            step=r.step_index,
            weight=r.weight,
            step_started_at=datetime.fromtimestamp(r.step_started_at, UTC),
            bake_time_s=r.plan.bake_time_s,
            reason=r.reason,
            started_by=r.started_by,
        )


class VerdictOut(BaseModel):
    """An A/B verdict (mSPRT: valid under continuous monitoring)."""

    status: str
    baseline: str
    candidate: str
    winner: str | None
    effect: float | None = Field(description="Candidate mean outcome minus baseline's.")
    confidence_interval: list[float] | None
    p_value: float = Field(description="Always-valid p-value.")
    srm_ok: bool = Field(description="Assignment counts match the weights.")
    srm_p_value: float
    alpha: float
    baseline_mean: float | None
    candidate_mean: float | None
    baseline_outcomes: int
    candidate_outcomes: int
    planned_n: int | None = Field(
        default=None,
        description="Outcomes per arm planned for the configured power to find the configured "
        "minimum effect (serving.ab_test.minimum_effect, .power).",
    )
    power: float | None = Field(
        default=None, description="The power for the minimum effect at the outcomes so far."
    )
    reason: str

    @classmethod
    def of(cls, v: Verdict) -> VerdictOut:
        """Wire form."""
        return cls(
            status=v.status.value,
            baseline=v.baseline,
            candidate=v.candidate,
            winner=v.winner,
            effect=v.effect,
            confidence_interval=list(v.confidence_interval) if v.confidence_interval else None,
            p_value=v.p_value,
            srm_ok=v.srm_ok,
            srm_p_value=v.srm_p_value,
            alpha=v.alpha,
            baseline_mean=v.baseline_mean,
            candidate_mean=v.candidate_mean,
            baseline_outcomes=v.baseline_outcomes,
            candidate_outcomes=v.candidate_outcomes,
            planned_n=v.planned_n,
            power=v.power,
            reason=v.reason,
        )


class DeploymentPublic(BaseModel):
    """A model's deployment: routing table, live statistics, rollout, A/B verdicts."""

    model: str
    strategy: Strategy
    revision: int
    experiment: str
    shadow_percent: float
    updated_at: datetime | None
    variants: list[VariantOut]
    rollout: RolloutOut | None
    verdicts: list[VerdictOut]

    @classmethod
    def of(cls, view: DeploymentView) -> DeploymentPublic:
        """Wire form."""
        table = view.table
        return cls(
            model=table.model,
            strategy=table.strategy,
            revision=table.revision,
            experiment=table.experiment,
            shadow_percent=table.shadow_percent,
            updated_at=table.updated_at,
            variants=[_variant(v, view) for v in table.variants],
            rollout=RolloutOut.of(view.rollout) if view.rollout else None,
            verdicts=[VerdictOut.of(v) for v in view.verdicts],
        )


def _variant(v: Any, view: DeploymentView) -> VariantOut:
    stats = view.stats.get(v.name, VariantStats())
    compared, agreed = view.shadow.get(v.name, (0, 0))
    return VariantOut(
        name=v.name,
        version=v.version,
        role=v.role,
        weight=v.weight,
        backend=v.backend,
        requests=stats.requests,
        errors=stats.errors,
        error_rate=round(stats.error_rate, 6),
        latency_ms={f"p{int(q * 100)}": stats.percentile_ms(q) for q in (0.5, 0.95, 0.99)},
        in_flight=view.inflight.get(v.name, 0),
        last_request_at=datetime.fromtimestamp(stats.last_request_at, UTC)
        if stats.last_request_at
        else None,
        quality=stats.outcomes.mean,
        outcomes=stats.outcomes.n,
        shadow_agreement=agreed / compared if compared else None,
    )


class PredictRequest(BaseModel):
    """Predict with the deployed model; the routing table picks the version."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "model": "churn",
                "request_key": "customer-42",
                "inputs": [{"tenure": 12, "monthly": 70.5}],
            }
        },
    )

    model: ModelName
    inputs: Any = Field(
        default=None,
        description="Records `[{...}]`, rows `[[...]]` or columns `{name: [...]}`.",
    )
    entities: list[dict[str, int | float | str | bool]] | None = Field(
        default=None,
        min_length=1,
        description='Or entity keys only (`[{"customer_id": 7}]`), for a version trained on a '
        "feature service: the service fetches its online features.",
    )
    request_key: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        default=None,
        description="Sticky assignment: the same key always reaches the same variant of an "
        "experiment (across replicas and restarts).",
    )

    @model_validator(mode="after")
    def _inputs_or_entities(self) -> Self:
        if (self.inputs is None) == (self.entities is None):
            raise ValueError("give either inputs or entities")
        return self


class PredictResponse(BaseModel):
    """Predictions, and which version answered."""

    request_id: str = Field(description="Quote it in POST /feedback.")
    model: str
    version: int
    variant: str
    predictions: list[Any] = Field(description="One per input row.")


class FeedbackItem(BaseModel):
    """Ground truth for one earlier prediction."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=128)
    label: Any = Field(default=None, description="The true label (or one per row).")
    outcome: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="Or an outcome directly, higher is better (reward, conversion).",
    )

    @model_validator(mode="after")
    def _label_or_outcome(self) -> Self:
        if self.label is None and self.outcome is None:
            raise ValueError("give a label or an outcome")
        return self

    def to_domain(self) -> Feedback:
        """The domain value."""
        return Feedback(self.request_id, self.label, self.outcome)


class FeedbackRequest(BaseModel):
    """Feedback for one request or many (`items`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"items": [{"request_id": "5f0c6f3e", "label": 1}]}},
    )

    items: list[FeedbackItem] = Field(min_length=1, max_length=1000)

    @model_validator(mode="before")
    @classmethod
    def _single_item(cls, data: Any) -> Any:
        if isinstance(data, dict) and "request_id" in data and "items" not in data:
            return {"items": [data]}
        return data


class FeedbackStatus(BaseModel):
    """What happened to one item: recorded, pending (its prediction is not known yet;
    it joins when it is) or duplicate (feedback was already given)."""

    request_id: str
    status: str


class FeedbackResponse(BaseModel):
    """One status per item."""

    results: list[FeedbackStatus]
