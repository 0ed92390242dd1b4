"""Settings of the model lifecycle: the registry and its promotion policies, and
monitoring (prediction log, drift, alerts, retraining)."""

from __future__ import annotations

from typing import Self

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator

from app.core.comparison import Goal
from app.core.gates import Gate, MetricRule, PromotionPolicy
from app.core.webhook_targets import networks, refusal
from app.settings.section import Section


class MetricRuleSettings(Section):
    """A bound on one metric of a candidate version."""

    metric: str = Field(min_length=1, max_length=250, description="Metric logged by the run.")
    min: float | None = Field(default=None, description="Lowest acceptable value.")
    max: float | None = Field(default=None, description="Highest acceptable value.")
    max_regression: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="How much worse than the production version it may be (0.01 = 1%).",
    )
    goal: Goal | None = Field(
        default=None, description="maximize/minimize; default from the name (loss: minimize)."
    )


class PolicySettings(Section):
    """A promotion policy (see the README's lifecycle section)."""

    metric_rules: tuple[MetricRuleSettings, ...] = Field(
        default=(), description="Explicit metric bounds for development -> staging."
    )
    default_max_regression: float | None = Field(
        default=0.01,
        ge=0,
        le=1,
        description=(
            "Every metric shared with the production version and not named in metric_rules "
            "may be at most this much worse (fraction); null turns the comparison off."
        ),
    )
    waived_gates: tuple[Gate, ...] = Field(
        default=(), description="Gates that may fail without blocking; each waiver is recorded."
    )
    required_approvals: int = Field(
        default=1, ge=1, le=10, description="Distinct approvers needed for production."
    )

    def to_domain(self) -> PromotionPolicy:
        """The domain policy."""
        return PromotionPolicy(
            metric_rules=tuple(
                MetricRule(r.metric, r.min, r.max, r.max_regression, r.goal)
                for r in self.metric_rules
            ),
            default_max_regression=self.default_max_regression,
            waived_gates=frozenset(self.waived_gates),
            required_approvals=self.required_approvals,
        )


class RegistrySettings(Section):
    """The model registry actor and its promotion policies."""

    actor_name: str = Field(default="ml-service-registry", description="Named Ray actor.")
    namespace: str = Field(default="ml-service", description="Ray namespace of the actors.")
    validation_num_cpus: float = Field(
        default=0.5, gt=0, description="CPUs reserved by the validation Ray task."
    )
    validation_timeout_s: float = Field(
        default=600, gt=0, description="A validation running longer fails."
    )
    default_policy: PolicySettings = Field(
        default_factory=PolicySettings, description="Policy of models without their own."
    )
    policies: dict[str, PolicySettings] = Field(
        default_factory=dict, description="Policies by model name (the API can override)."
    )

    def policy_for(self, model: str) -> PromotionPolicy:
        """The configured policy of `model`."""
        return self.policies.get(model, self.default_policy).to_domain()


class MonitoringSettings(Section):
    """Prediction logging, drift detection, alerts and retraining triggers."""

    enabled: bool = Field(default=True, description="Log predictions and run the monitor.")
    actor_name: str = Field(default="ml-service-monitor", description="Named Ray actor.")
    sample_rate: float = Field(
        default=1.0, ge=0, le=1, description="Share of requests logged (models without a policy)."
    )
    log_flush_s: float = Field(
        default=2.0, gt=0, description="The longest a logged prediction waits in memory."
    )
    log_batch_rows: int = Field(default=5000, ge=1, description="Rows written at once.")
    log_retention_s: float = Field(
        default=30 * 86_400, gt=0, description="Logged predictions older than this are deleted."
    )
    evaluate_every_s: float = Field(
        default=60.0, gt=0, description="How often the monitor evaluates every logged model."
    )
    window_s: float = Field(
        default=3600.0, gt=0, description="Traffic compared with the reference (default policy)."
    )
    cooldown_s: float = Field(
        default=3600.0,
        ge=0,
        description="A drift back within this after resolving reopens silently.",
    )
    psi: float = Field(default=0.2, gt=0, description="PSI at which a feature drifts.")
    ks_statistic: float = Field(
        default=0.1, gt=0, le=1, description="KS statistic at which a numeric feature drifts."
    )
    alpha: float = Field(default=0.01, gt=0, lt=1, description="Significance of the test.")
    min_samples: int = Field(default=200, ge=1, description="Smaller windows never alert.")
    reference_rows: int = Field(
        default=1000,
        ge=50,
        description="A version with no reference from training or its run's dataset takes "
        "its first this many logged rows of live traffic as its reference.",
    )
    webhook_url: AnyHttpUrl | None = Field(
        default=None, description="Where alerts are sent (models without a policy of their own)."
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="HMAC-SHA256 key of the X-MLService-Signature header (ML_MONITORING__"
        "WEBHOOK_SECRET).",
    )
    webhook_allowed_networks: tuple[str, ...] = Field(
        default=(),
        description="CIDRs webhooks may reach although link-local (e.g. 169.254.10.0/24); "
        "link-local and cloud metadata targets are refused otherwise.",
    )
    webhook_timeout_s: float = Field(default=5.0, gt=0, description="One delivery attempt.")
    webhook_attempts: int = Field(default=3, ge=1, le=10, description="Attempts per delivery.")
    policy_poll_s: float = Field(
        default=5.0, gt=0, description="How often replicas refresh the models' sample rates."
    )

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        networks(value)  # ValueError names the bad one
        return value

    @model_validator(mode="after")
    def _webhook_may_go(self) -> Self:
        if self.webhook_url is not None and self.webhook_url.host:
            why = refusal(self.webhook_url.host, (), networks(self.webhook_allowed_networks))
            if why:
                raise ValueError(f"webhook_url: {why} (see webhook_allowed_networks)")
        return self


class DiagnosticsSettings(Section):
    """`POST /models/{id}/diagnose`: findings, and an assistant LLM's explanation."""

    assistant_model: str | None = Field(
        default=None,
        description="The registered model (deployed with the vllm backend) that explains "
        "findings; null: findings only.",
    )
    max_tokens: int = Field(default=256, ge=16, le=4096, description="The longest explanation.")
    default_window_s: float = Field(
        default=86_400.0, gt=0, description="The window a diagnosis looks at by default."
    )
