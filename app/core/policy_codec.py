"""Promotion policies as plain JSON, for the service database and the audit log."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.core.comparison import Goal
from app.core.gates import Gate, MetricRule, PromotionPolicy


def policy_as_dict(policy: PromotionPolicy) -> dict[str, Any]:
    """Plain JSON form of a policy."""
    return {
        "metric_rules": [
            {
                "metric": r.metric,
                "min": r.min,
                "max": r.max,
                "max_regression": r.max_regression,
                "goal": r.goal.value if r.goal else None,
            }
            for r in policy.metric_rules
        ],
        "default_max_regression": policy.default_max_regression,
        "waived_gates": sorted(g.value for g in policy.waived_gates),
        "required_approvals": policy.required_approvals,
    }


def policy_from_dict(data: Mapping[str, Any]) -> PromotionPolicy:
    """The policy stored by `policy_as_dict`."""
    rules = tuple(
        MetricRule(
            metric=r["metric"],
            min=r.get("min"),
            max=r.get("max"),
            max_regression=r.get("max_regression"),
            goal=Goal(r["goal"]) if r.get("goal") else None,
        )
        for r in data.get("metric_rules", ())
    )
    return PromotionPolicy(
        metric_rules=rules,
        default_max_regression=data.get("default_max_regression"),
        waived_gates=frozenset(Gate(g) for g in data.get("waived_gates", ())),
        required_approvals=int(data.get("required_approvals", 1)),
    )
