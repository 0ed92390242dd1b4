"""Wire models of a promotion policy: the body of `PUT /models/{id}/policy` and the
policy a model shows (the configured ones are settings, `app.settings.PolicySettings`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.comparison import Goal
from app.core.gates import Gate, MetricRule, PromotionPolicy
from app.core.policy_codec import policy_as_dict


class MetricRuleBody(BaseModel):
    """A bound on one metric of a candidate version."""

    model_config = ConfigDict(extra="forbid")

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


class PromotionPolicyBody(BaseModel):
    """A promotion policy (see the README's lifecycle section)."""

    model_config = ConfigDict(extra="forbid")

    metric_rules: tuple[MetricRuleBody, ...] = Field(
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

    @classmethod
    def of(cls, policy: PromotionPolicy) -> PromotionPolicyBody:
        """Wire form."""
        body: dict[str, Any] = policy_as_dict(policy)
        return cls.model_validate(body)

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
