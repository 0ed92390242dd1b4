"""Promotion gates: what each lifecycle edge requires, evaluated as pure functions of facts.

The registry actor gathers the facts (a validation report from a Ray task, the production
version's metrics, approvals, serving evidence) and calls `evaluate`; every check comes
back with its inputs and why it passed or failed, so a refusal can list all of them and a
promotion can store them as its evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from app.core.comparison import Goal, evaluation_metrics, goal_of
from app.core.lifecycle import ModelStage


class Gate(StrEnum):
    """The gates, by name (policies waive them by these names)."""

    VALIDATION = "validation"
    METRICS = "metrics_baseline"
    INTEGRATION = "integration_checks"
    AB_TEST = "ab_test"
    APPROVAL = "manual_approval"
    NEWER_IN_PRODUCTION = "newer_version_in_production"
    TRAFFIC_DRAINED = "traffic_drained"


GATES_BY_TARGET: Mapping[ModelStage, tuple[Gate, ...]] = {
    ModelStage.STAGING: (Gate.VALIDATION, Gate.METRICS),
    ModelStage.PRODUCTION: (Gate.INTEGRATION, Gate.AB_TEST, Gate.APPROVAL),
    ModelStage.ARCHIVED: (Gate.NEWER_IN_PRODUCTION, Gate.TRAFFIC_DRAINED),
}


@dataclass(frozen=True)
class MetricRule:
    """A bound on one metric: absolute (`min`, `max`) and/or relative to production
    (`max_regression`, a fraction: 0.01 allows 1% worse than the production version)."""

    metric: str
    min: float | None = None
    max: float | None = None
    max_regression: float | None = None
    goal: Goal | None = None


@dataclass(frozen=True)
class PromotionPolicy:
    """A model's promotion rules.

    Attributes:
        metric_rules: explicit bounds, by metric.
        default_max_regression: for every metric shared with the production version and
            not named in `metric_rules`, how much worse (fraction) the candidate may be;
            None turns the default comparison off.
        waived_gates: gates that may fail without blocking; each waiver is recorded.
        required_approvals: distinct approvers needed for production.
    """

    metric_rules: tuple[MetricRule, ...] = ()
    default_max_regression: float | None = 0.01
    waived_gates: frozenset[Gate] = frozenset()
    required_approvals: int = 1


@dataclass(frozen=True)
class Check:
    """One gate's verdict, with what it looked at."""

    gate: Gate
    passed: bool
    reason: str
    inputs: Mapping[str, Any] = field(default_factory=dict)
    waived: bool = False

    @property
    def ok(self) -> bool:
        """Whether the check lets the promotion through (passed, or failed but waived)."""
        return self.passed or self.waived


@dataclass(frozen=True)
class ValidationReport:
    """The automated validation of a version (run as a Ray task): each step and its outcome."""

    steps: tuple[tuple[str, bool, str], ...]

    @property
    def passed(self) -> bool:
        """Every step passed."""
        return bool(self.steps) and all(ok for _, ok, _ in self.steps)


@dataclass(frozen=True)
class Evidence:
    """Evidence from serving (integration checks, A/B verdicts): passed or not, and why."""

    passed: bool
    details: Mapping[str, Any]


@dataclass(frozen=True)
class Approval:
    """A recorded approval, bound to the artifact digest it approved."""

    version: int
    digest: str
    approver: str
    at: datetime
    comment: str = ""


@dataclass(frozen=True)
class ProductionFacts:
    """The version currently in production."""

    version: int
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class PromotionFacts:
    """Everything the gates of one edge look at."""

    version: int
    digest: str
    metrics: Mapping[str, float]
    production: ProductionFacts | None = None
    evaluation: Mapping[str, str] = field(default_factory=dict)  # declared by its run
    validation: ValidationReport | None = None
    approvals: tuple[Approval, ...] = ()
    integration: Evidence | None = None
    ab_test: Evidence | None = None
    traffic: Evidence | None = None  # passed: drained; None: not deployed


def evaluate(
    target: ModelStage, facts: PromotionFacts, policy: PromotionPolicy
) -> tuple[Check, ...]:
    """Every check of the edge into `target`, with waivers applied."""
    checks = tuple(_CHECKS[gate](facts, policy) for gate in GATES_BY_TARGET[target])
    return tuple(_apply_waiver(check, policy) for check in checks)


def _apply_waiver(check: Check, policy: PromotionPolicy) -> Check:
    if check.passed or check.gate not in policy.waived_gates:
        return check
    return replace(check, waived=True, reason=f"{check.reason} (waived by policy)")


def _validation(facts: PromotionFacts, policy: PromotionPolicy) -> Check:
    del policy
    report = facts.validation
    if report is None:
        return Check(Gate.VALIDATION, False, "the validation did not run")
    steps = [{"step": name, "passed": ok, "detail": detail} for name, ok, detail in report.steps]
    failed = [name for name, ok, _ in report.steps if not ok]
    reason = "the model loads, predicts on its input example, output matches its signature"
    if failed:
        details = "; ".join(f"{name}: {detail}" for name, ok, detail in report.steps if not ok)
        reason = f"failed: {', '.join(failed)} ({details})"
    return Check(Gate.VALIDATION, report.passed, reason, {"steps": steps})


def _metrics(facts: PromotionFacts, policy: PromotionPolicy) -> Check:
    """Explicit bounds, and every evaluation metric (declared by the run, else all but
    the bookkeeping ones) shared with production, in its declared direction."""
    outcomes = [_rule_outcome(rule, facts) for rule in policy.metric_rules]
    compared: dict[str, Goal] = {}
    if policy.default_max_regression is not None and facts.production is not None:
        named = {rule.metric for rule in policy.metric_rules}
        compared = {
            metric: goal
            for metric, goal in evaluation_metrics(facts.metrics, facts.evaluation).items()
            if metric in facts.production.metrics and metric not in named
        }
        outcomes += [
            _rule_outcome(
                MetricRule(m, max_regression=policy.default_max_regression, goal=goal), facts
            )
            for m, goal in sorted(compared.items())
        ]
    inputs = {
        "candidate": {"version": facts.version, "metrics": dict(facts.metrics)},
        "production": None
        if facts.production is None
        else {"version": facts.production.version, "metrics": dict(facts.production.metrics)},
        "evaluation_metrics": {m: g.value for m, g in compared.items()},
        "declared": bool(facts.evaluation),
        "rules": outcomes,
    }
    if not outcomes:
        return Check(
            Gate.METRICS, True, "no baseline: no thresholds and no production version", inputs
        )
    failures = [o["reason"] for o in outcomes if not o["passed"]]
    reason = "; ".join(failures) if failures else f"{len(outcomes)} metric bound(s) met"
    return Check(Gate.METRICS, not failures, reason, inputs)


def _rule_outcome(rule: MetricRule, facts: PromotionFacts) -> dict[str, Any]:
    value = facts.metrics.get(rule.metric)
    goal = rule.goal or goal_of(rule.metric)
    outcome: dict[str, Any] = {"metric": rule.metric, "value": value, "goal": goal.value}
    problems: list[str] = []
    if value is None:
        problems.append(f"{rule.metric} was not logged by the version's run")
    else:
        if rule.min is not None and value < rule.min:
            problems.append(f"{rule.metric} {value:g} is below the minimum {rule.min:g}")
        if rule.max is not None and value > rule.max:
            problems.append(f"{rule.metric} {value:g} is above the maximum {rule.max:g}")
        problems += _regression_problems(rule, value, goal, facts, outcome)
    outcome.update(
        {
            "min": rule.min,
            "max": rule.max,
            "max_regression": rule.max_regression,
            "passed": not problems,
            "reason": "; ".join(problems) or "met",
        }
    )
    return outcome


def _regression_problems(
    rule: MetricRule, value: float, goal: Goal, facts: PromotionFacts, outcome: dict[str, Any]
) -> list[str]:
    production = facts.production
    if rule.max_regression is None or production is None:
        return []
    baseline = production.metrics.get(rule.metric)
    outcome["production_value"] = baseline
    if baseline is None:
        return []
    slack = abs(baseline) * rule.max_regression
    bound = baseline - slack if goal is Goal.MAXIMIZE else baseline + slack
    outcome["bound"] = bound
    worse = value < bound if goal is Goal.MAXIMIZE else value > bound
    if not worse:
        return []
    return [
        f"{rule.metric} {value:g} is worse than production v{production.version} "
        f"({baseline:g}) beyond the allowed {rule.max_regression:.1%}"
    ]


def _serving_evidence(gate: Gate, evidence: Evidence | None, what: str) -> Check:
    if evidence is None:
        return Check(gate, False, f"no evidence: {what}")
    reason = str(evidence.details.get("reason") or ("passed" if evidence.passed else "failed"))
    return Check(gate, evidence.passed, reason, dict(evidence.details))


def _integration(facts: PromotionFacts, policy: PromotionPolicy) -> Check:
    del policy
    return _serving_evidence(
        Gate.INTEGRATION, facts.integration, "no live staging deployment has been checked"
    )


def _ab_test(facts: PromotionFacts, policy: PromotionPolicy) -> Check:
    del policy
    if facts.production is None:
        return Check(
            Gate.AB_TEST,
            True,
            "not applicable: there is no production version to compare with",
            {"applicable": False},
        )
    return _serving_evidence(
        Gate.AB_TEST, facts.ab_test, "no A/B verdict against the production version"
    )


def _approval(facts: PromotionFacts, policy: PromotionPolicy) -> Check:
    valid = [a for a in facts.approvals if a.version == facts.version and a.digest == facts.digest]
    approvers = sorted({a.approver for a in valid})
    stale = [a.approver for a in facts.approvals if a.digest != facts.digest]
    inputs = {
        "digest": facts.digest,
        "approvers": approvers,
        "stale": stale,
        "required": policy.required_approvals,
    }
    if len(approvers) >= policy.required_approvals:
        return Check(Gate.APPROVAL, True, f"approved by {', '.join(approvers)}", inputs)
    needed = policy.required_approvals - len(approvers)
    return Check(
        Gate.APPROVAL,
        False,
        f"needs {needed} more approval(s) by an approver for this artifact",
        inputs,
    )


def _newer_in_production(facts: PromotionFacts, policy: PromotionPolicy) -> Check:
    del policy
    production = facts.production
    inputs = {"production_version": production.version if production else None}
    if production is not None and production.version != facts.version:
        return Check(
            Gate.NEWER_IN_PRODUCTION, True, f"version {production.version} is in production", inputs
        )
    return Check(Gate.NEWER_IN_PRODUCTION, False, "no newer version is in production", inputs)


def _traffic_drained(facts: PromotionFacts, policy: PromotionPolicy) -> Check:
    del policy
    traffic = facts.traffic
    if traffic is None:
        return Check(Gate.TRAFFIC_DRAINED, True, "not deployed: no traffic", {})
    reason = str(traffic.details.get("reason", "drained" if traffic.passed else "serving"))
    return Check(Gate.TRAFFIC_DRAINED, traffic.passed, reason, dict(traffic.details))


_CHECKS = {
    Gate.VALIDATION: _validation,
    Gate.METRICS: _metrics,
    Gate.INTEGRATION: _integration,
    Gate.AB_TEST: _ab_test,
    Gate.APPROVAL: _approval,
    Gate.NEWER_IN_PRODUCTION: _newer_in_production,
    Gate.TRAFFIC_DRAINED: _traffic_drained,
}
