from datetime import UTC, datetime

from app.core.comparison import Goal
from app.core.gates import (
    Approval,
    Evidence,
    Gate,
    MetricRule,
    ProductionFacts,
    PromotionFacts,
    PromotionPolicy,
    ValidationReport,
    evaluate,
)
from app.core.lifecycle import ModelStage

NOW = datetime(2026, 11, 1, tzinfo=UTC)
GOOD = ValidationReport((("loads", True, ""), ("predicts", True, ""), ("output", True, "")))


def by_gate(checks):  # type: ignore[no-untyped-def]
    return {c.gate: c for c in checks}


def test_staging_needs_validation_and_metrics() -> None:
    facts = PromotionFacts(version=2, digest="d", metrics={"accuracy": 0.9}, validation=GOOD)
    checks = by_gate(evaluate(ModelStage.STAGING, facts, PromotionPolicy()))
    assert set(checks) == {Gate.VALIDATION, Gate.METRICS}
    assert all(c.ok for c in checks.values())
    assert "no baseline" in checks[Gate.METRICS].reason


def test_failed_validation_names_the_step() -> None:
    bad = ValidationReport((("loads", True, ""), ("output_matches_signature", False, "2 != 3")))
    check = by_gate(
        evaluate(ModelStage.STAGING, PromotionFacts(1, "d", {}, validation=bad), PromotionPolicy())
    )[Gate.VALIDATION]
    assert not check.passed and "output_matches_signature" in check.reason
    missing = by_gate(evaluate(ModelStage.STAGING, PromotionFacts(1, "d", {}), PromotionPolicy()))[
        Gate.VALIDATION
    ]
    assert not missing.passed


def test_absolute_thresholds() -> None:
    policy = PromotionPolicy(
        metric_rules=(MetricRule("accuracy", min=0.9), MetricRule("rmse", max=1.0))
    )
    facts = PromotionFacts(1, "d", {"accuracy": 0.85, "rmse": 0.5}, validation=GOOD)
    check = by_gate(evaluate(ModelStage.STAGING, facts, policy))[Gate.METRICS]
    assert not check.passed
    assert "accuracy 0.85 is below the minimum 0.9" in check.reason
    rules = {r["metric"]: r for r in check.inputs["rules"]}
    assert rules["rmse"]["passed"] and not rules["accuracy"]["passed"]
    missing = PromotionFacts(1, "d", {"rmse": 0.5}, validation=GOOD)
    assert (
        "not logged" in by_gate(evaluate(ModelStage.STAGING, missing, policy))[Gate.METRICS].reason
    )


def test_relative_to_production_by_default_and_by_rule() -> None:
    production = ProductionFacts(1, {"accuracy": 0.90, "val_loss": 0.30, "other": 1.0})
    worse = PromotionFacts(
        2, "d", {"accuracy": 0.88, "val_loss": 0.30}, production=production, validation=GOOD
    )
    check = by_gate(evaluate(ModelStage.STAGING, worse, PromotionPolicy()))[Gate.METRICS]
    assert not check.passed and "worse than production v1" in check.reason
    within = PromotionFacts(
        2, "d", {"accuracy": 0.895, "val_loss": 0.302}, production=production, validation=GOOD
    )
    assert by_gate(evaluate(ModelStage.STAGING, within, PromotionPolicy()))[Gate.METRICS].passed
    loose = PromotionPolicy(metric_rules=(MetricRule("accuracy", max_regression=0.05),))
    assert by_gate(evaluate(ModelStage.STAGING, worse, loose))[Gate.METRICS].passed
    off = PromotionPolicy(default_max_regression=None)
    assert by_gate(evaluate(ModelStage.STAGING, worse, off))[Gate.METRICS].passed
    flipped = PromotionPolicy(
        metric_rules=(MetricRule("accuracy", max_regression=0.0, goal=Goal.MINIMIZE),)
    )
    assert by_gate(evaluate(ModelStage.STAGING, worse, flipped))[Gate.METRICS].passed


def test_production_without_serving_evidence_is_blocked_unless_waived() -> None:
    approval = Approval(3, "d3", "alice", NOW)
    facts = PromotionFacts(3, "d3", {}, production=ProductionFacts(1, {}), approvals=(approval,))
    checks = by_gate(evaluate(ModelStage.PRODUCTION, facts, PromotionPolicy()))
    assert checks[Gate.APPROVAL].passed
    assert not checks[Gate.INTEGRATION].ok and "no evidence" in checks[Gate.INTEGRATION].reason
    assert not checks[Gate.AB_TEST].ok
    waived = PromotionPolicy(waived_gates=frozenset({Gate.INTEGRATION, Gate.AB_TEST}))
    checks = by_gate(evaluate(ModelStage.PRODUCTION, facts, waived))
    assert all(c.ok for c in checks.values())
    assert checks[Gate.AB_TEST].waived and not checks[Gate.AB_TEST].passed
    assert "waived by policy" in checks[Gate.AB_TEST].reason
    assert not checks[Gate.APPROVAL].waived  # a passing gate is not marked waived


def test_serving_evidence_when_present() -> None:
    facts = PromotionFacts(
        3,
        "d",
        {},
        production=ProductionFacts(1, {}),
        integration=Evidence(True, {"requests": 10}),
        ab_test=Evidence(False, {"p_value": 0.4, "reason": "no significant difference yet"}),
    )
    checks = by_gate(evaluate(ModelStage.PRODUCTION, facts, PromotionPolicy()))
    assert checks[Gate.INTEGRATION].passed and checks[Gate.INTEGRATION].inputs == {"requests": 10}
    assert not checks[Gate.AB_TEST].passed
    assert checks[Gate.AB_TEST].reason == "no significant difference yet"  # not just "failed"


def test_a_first_version_needs_no_ab_test_and_says_why() -> None:
    facts = PromotionFacts(1, "d", {}, production=None, approvals=(Approval(1, "d", "a", NOW),))
    check = by_gate(evaluate(ModelStage.PRODUCTION, facts, PromotionPolicy()))[Gate.AB_TEST]
    assert check.passed and not check.waived
    assert check.inputs == {"applicable": False}
    assert check.reason.startswith("not applicable")


def test_the_baseline_compares_evaluation_metrics_not_bookkeeping() -> None:
    # the README's train-then-tune flow: the tuned version is better where it counts
    production = ProductionFacts(
        1,
        {
            "val_loss": 0.40,
            "val_accuracy": 0.80,
            "epoch": 5,
            "train_loss": 0.30,
            "baseline_accuracy": 0.74,
            "epoch_seconds": 1.0,
        },
    )
    tuned = PromotionFacts(
        2,
        "d",
        {
            "val_loss": 0.35,
            "val_accuracy": 0.82,
            "epoch": 3,
            "train_loss": 0.45,
            "baseline_accuracy": 0.70,
            "epoch_seconds": 3.0,
        },
        production=production,
        validation=GOOD,
    )
    check = by_gate(evaluate(ModelStage.STAGING, tuned, PromotionPolicy()))[Gate.METRICS]
    assert check.passed, check.reason
    assert check.inputs["evaluation_metrics"] == {
        "val_accuracy": "maximize",
        "val_loss": "minimize",
    }
    declared = PromotionFacts(
        2,
        "d",
        {"val_loss": 0.50, "val_accuracy": 0.82},
        production=production,
        validation=GOOD,
        evaluation={"val_accuracy": "maximize"},  # the run says only this one counts
    )
    assert by_gate(evaluate(ModelStage.STAGING, declared, PromotionPolicy()))[Gate.METRICS].passed
    worse = PromotionFacts(
        2, "d", {"val_loss": 0.5, "val_accuracy": 0.82}, production=production, validation=GOOD
    )
    refused = by_gate(evaluate(ModelStage.STAGING, worse, PromotionPolicy()))[Gate.METRICS]
    assert not refused.passed
    assert "val_loss 0.5 is worse than production v1 (0.4)" in refused.reason


def test_approvals_are_bound_to_the_digest() -> None:
    stale = Approval(3, "old-digest", "alice", NOW)
    facts = PromotionFacts(3, "new-digest", {}, approvals=(stale,))
    check = by_gate(evaluate(ModelStage.PRODUCTION, facts, PromotionPolicy()))[Gate.APPROVAL]
    assert not check.passed and check.inputs["stale"] == ["alice"]
    two = PromotionPolicy(required_approvals=2)
    same_person = (Approval(3, "d", "bob", NOW), Approval(3, "d", "bob", NOW))
    check = by_gate(
        evaluate(ModelStage.PRODUCTION, PromotionFacts(3, "d", {}, approvals=same_person), two)
    )[Gate.APPROVAL]
    assert not check.passed  # distinct approvers


def test_archiving_needs_a_newer_production_version_and_no_traffic() -> None:
    facts = PromotionFacts(1, "d", {}, production=ProductionFacts(2, {}), traffic=None)
    assert all(c.ok for c in evaluate(ModelStage.ARCHIVED, facts, PromotionPolicy()))
    serving = PromotionFacts(
        1, "d", {}, production=ProductionFacts(2, {}), traffic=Evidence(False, {"share": 0.2})
    )
    assert not by_gate(evaluate(ModelStage.ARCHIVED, serving, PromotionPolicy()))[
        Gate.TRAFFIC_DRAINED
    ].ok
    alone = PromotionFacts(1, "d", {}, production=ProductionFacts(1, {}))
    assert not by_gate(evaluate(ModelStage.ARCHIVED, alone, PromotionPolicy()))[
        Gate.NEWER_IN_PRODUCTION
    ].ok
