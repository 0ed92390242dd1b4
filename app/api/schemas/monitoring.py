"""Wire schemas of monitoring: policies, alerts, drift evaluations, the per-model view."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, Self

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from app.core.drift import FeatureKind, Thresholds
from app.core.monitoring import Alert, AlertState, Delivery, MonitoringPolicy, RetrainPolicy
from app.jobs.spec import TrainingSpec


class ThresholdsBody(BaseModel):
    """When a feature counts as drifted: enough samples, significant, and a large effect."""

    model_config = ConfigDict(extra="forbid")

    psi: float = Field(default=0.2, gt=0, le=10, description="PSI at which a feature drifts.")
    ks_statistic: float = Field(
        default=0.1, gt=0, le=1, description="KS statistic at which a numeric feature drifts."
    )
    alpha: float = Field(default=0.01, gt=0, lt=1, description="Significance of the test.")
    min_samples: int = Field(default=200, ge=1, description="Smaller windows never alert.")


class RetrainBody(BaseModel):
    """Submit this training job when drift opens an alert (debounced)."""

    model_config = ConfigDict(extra="forbid")

    spec: TrainingSpec = Field(
        description="The model's training job, as /training/submit takes it."
    )
    max_jobs: int = Field(default=1, ge=1, le=100, description="At most this many jobs...")
    period_s: float = Field(default=86_400, gt=0, description="...per this many seconds.")


class MonitoringPolicyBody(BaseModel):
    """How a model is watched."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "window_s": 3600,
                "thresholds": {"psi": 0.2, "ks_statistic": 0.1, "alpha": 0.01, "min_samples": 200},
                "cooldown_s": 3600,
                "sample_rate": 1.0,
                "webhook_url": "https://hooks.example.com/ml-alerts",
            }
        },
    )

    window_s: float = Field(
        default=3600,
        gt=0,
        le=30 * 86_400,
        description="Each evaluation compares this much traffic.",
    )
    thresholds: ThresholdsBody = Field(default_factory=ThresholdsBody)
    cooldown_s: float = Field(
        default=3600,
        ge=0,
        description="A drift back within this after its alert resolved reopens it silently.",
    )
    sample_rate: float = Field(default=1.0, ge=0, le=1, description="Share of requests logged.")
    webhook_url: AnyHttpUrl | None = Field(
        default=None, description="Alerts are POSTed here, signed (X-MLService-Signature)."
    )
    retrain: RetrainBody | None = None

    def to_domain(self) -> MonitoringPolicy:
        retrain = None
        if self.retrain is not None:
            retrain = RetrainPolicy(
                spec=self.retrain.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
                max_jobs=self.retrain.max_jobs,
                period_s=self.retrain.period_s,
            )
        return MonitoringPolicy(
            window_s=self.window_s,
            thresholds=Thresholds(**self.thresholds.model_dump()),
            cooldown_s=self.cooldown_s,
            sample_rate=self.sample_rate,
            webhook_url=str(self.webhook_url) if self.webhook_url else None,
            retrain=retrain,
        )


class MonitoringPolicyPublic(MonitoringPolicyBody):
    """A model's policy; `own` is false when it is the service's default."""

    model_config = ConfigDict(extra="ignore")

    model: str
    own: bool

    @classmethod
    def of(cls, model: str, policy: MonitoringPolicy, own: bool) -> Self:
        retrain = None
        if policy.retrain is not None:
            retrain = RetrainBody(
                spec=TrainingSpec.model_validate(dict(policy.retrain.spec)),
                max_jobs=policy.retrain.max_jobs,
                period_s=policy.retrain.period_s,
            )
        return cls(
            model=model,
            own=own,
            window_s=policy.window_s,
            thresholds=ThresholdsBody(**vars(policy.thresholds)),
            cooldown_s=policy.cooldown_s,
            sample_rate=policy.sample_rate,
            webhook_url=AnyHttpUrl(policy.webhook_url) if policy.webhook_url else None,
            retrain=retrain,
        )


class WindowOut(BaseModel):
    start: datetime
    end: datetime
    rows: int = Field(description="Logged rows in the window.")

    @classmethod
    def of(cls, window: dict[str, Any]) -> Self:
        return cls(
            start=datetime.fromtimestamp(window["start"], UTC),
            end=datetime.fromtimestamp(window["end"], UTC),
            rows=window["rows"],
        )


class FeatureDriftOut(BaseModel):
    """One feature (or `__prediction__`, the model's output) over one window."""

    feature: str
    kind: FeatureKind
    samples: int
    missing_rate: float
    psi: float | None
    js_distance: float | None = Field(description="Jensen-Shannon distance, base 2.")
    ks_statistic: float | None
    wasserstein: float | None = Field(description="In reference standard deviations.")
    p_value: float | None = Field(description="KS (numeric) or chi-square (categorical).")
    drifted: bool
    reason: str
    bin_labels: list[str]
    reference_hist: list[float] = Field(description="Share of the reference per bin.")
    current_hist: list[float] = Field(description="Share of the window per bin.")


class DriftOut(BaseModel):
    """One version's latest evaluation."""

    version: int
    window: WindowOut
    reference: bool = Field(
        description="False: no reference yet (none from training or the run's dataset, and "
        "fewer live rows logged than monitoring.reference_rows)."
    )
    reference_source: str | None = Field(
        default=None,
        description="training, dataset (the run's logged dataset) or live_window (the "
        "version's first live traffic; later windows are compared with it).",
    )
    drifted: list[str] = Field(default_factory=list)
    features: list[FeatureDriftOut] = Field(default_factory=list)

    @classmethod
    def of(cls, version: int, body: dict[str, Any]) -> Self:
        return cls(
            version=version,
            window=WindowOut.of(body["window"]),
            reference=body["reference"],
            reference_source=body.get("reference_source"),
            drifted=body.get("drifted", []),
            features=[FeatureDriftOut(**f) for f in body.get("features", [])],
        )


class AlertPublic(BaseModel):
    """A drift alert."""

    id: str
    model: str
    version: int
    state: AlertState
    features: list[str] = Field(description="Every feature seen drifting while open.")
    scores: dict[str, dict[str, Any]] = Field(description="The latest window's, per feature.")
    window: WindowOut
    opened_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    occurrences: int = Field(description="Windows that showed the drift.")
    delivery: Delivery
    delivery_detail: str
    retraining_job: str | None = Field(description="The training job this alert started.")

    @classmethod
    def of(cls, alert: Alert) -> Self:
        def when(epoch: float | None) -> datetime | None:
            return None if epoch is None else datetime.fromtimestamp(epoch, UTC)

        return cls(
            id=alert.id,
            model=alert.model,
            version=alert.version,
            state=alert.state,
            features=list(alert.features),
            scores={k: dict(v) for k, v in alert.scores.items()},
            window=WindowOut.of(vars(alert.window)),
            opened_at=datetime.fromtimestamp(alert.opened_at, UTC),
            last_seen_at=datetime.fromtimestamp(alert.last_seen_at, UTC),
            resolved_at=when(alert.resolved_at),
            occurrences=alert.occurrences,
            delivery=alert.delivery,
            delivery_detail=alert.delivery_detail,
            retraining_job=alert.retraining_job,
        )


class LatencyOut(BaseModel):
    p50: float | None
    p90: float | None
    p99: float | None


class QualityOut(BaseModel):
    """Joined feedback outcomes (1/0 for a correct label, or the value sent)."""

    outcomes: int
    mean: float | None


class VariantMonitoring(BaseModel):
    """What one variant has served (every request counted, not sampled)."""

    variant: str
    version: int
    role: str | None = Field(description="Its role in the current routing table, if any.")
    requests: int
    errors: int
    error_rate: float
    request_rate_per_s: float | None = Field(
        description="Over the policy window, from the prediction log (scaled by the sample rate)."
    )
    latency_ms: LatencyOut
    quality: QualityOut


class ModelMonitoring(BaseModel):
    """A model's live view: per variant traffic and latency, per version drift."""

    model: str
    policy: MonitoringPolicyPublic
    variants: list[VariantMonitoring]
    drift: list[DriftOut] = Field(description="The latest evaluation of each logged version.")
    open_alerts: list[AlertPublic]


ReportFormat = Literal["png", "html"]
