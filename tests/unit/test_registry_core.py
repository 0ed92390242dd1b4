from datetime import UTC, datetime

import pytest

from app.core.gates import (
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
from app.core.registry import (
    Lineage,
    ModelVersion,
    aliases,
    decide_promotion,
    holders,
    refusal,
)
from app.core.semver import ArtifactFacts, SemVer
from app.errors import Conflict, ErrorCode

NOW = datetime(2026, 11, 1, tzinfo=UTC)
GOOD = ValidationReport((("loads", True, ""),))


def version(n: int, stage: ModelStage, metrics: dict[str, float] | None = None) -> ModelVersion:
    return ModelVersion(
        model="churn",
        version=n,
        semver=SemVer(1, n, 0),
        stage=stage,
        facts=ArtifactFacts("s", f"a{n}", "m"),
        metrics=metrics or {},
        lineage=Lineage(None, None),
        description="",
        tags={},
        registered_at=NOW,
        registered_by="eng",
        stage_changed_at=NOW,
    )


def test_a_passing_promotion_moves_the_version() -> None:
    v = version(1, ModelStage.DEVELOPMENT)
    decision = decide_promotion(
        "churn",
        v,
        ModelStage.STAGING,
        PromotionFacts(1, "a1", {}, validation=GOOD),
        PromotionPolicy(),
    )
    assert decision.approved
    assert [(c.version, c.source, c.target) for c in decision.changes] == [
        (1, ModelStage.DEVELOPMENT, ModelStage.STAGING)
    ]


def test_illegal_moves_are_409() -> None:
    v = version(1, ModelStage.STAGING)
    with pytest.raises(Conflict) as refused:
        decide_promotion(
            "churn", v, ModelStage.STAGING, PromotionFacts(1, "a1", {}), PromotionPolicy()
        )
    assert refused.value.code is ErrorCode.ILLEGAL_TRANSITION
    with pytest.raises(Conflict):
        decide_promotion(
            "churn",
            version(1, ModelStage.DEVELOPMENT),
            ModelStage.PRODUCTION,
            PromotionFacts(1, "a1", {}),
            PromotionPolicy(),
        )


def test_a_refusal_lists_every_check() -> None:
    policy = PromotionPolicy(metric_rules=(MetricRule("accuracy", min=0.9),))
    decision = decide_promotion(
        "churn",
        version(1, ModelStage.DEVELOPMENT),
        ModelStage.STAGING,
        PromotionFacts(1, "a1", {"accuracy": 0.8}, validation=GOOD),
        policy,
    )
    assert not decision.approved
    error = refusal("churn", 1, decision)
    assert error.code is ErrorCode.GATES_FAILED
    checks = {c["gate"]: c for c in error.context["checks"]}
    assert set(checks) == {"validation", "metrics_baseline"}
    assert checks["validation"]["passed"] and not checks["metrics_baseline"]["passed"]


def test_production_supersedes_the_drained_previous_version() -> None:
    old = version(1, ModelStage.PRODUCTION)
    new = version(2, ModelStage.STAGING)
    waive = PromotionPolicy(waived_gates=frozenset({Gate.INTEGRATION, Gate.AB_TEST, Gate.APPROVAL}))
    archive = PromotionFacts(1, "a1", {}, production=ProductionFacts(2, {}))
    decision = decide_promotion(
        "churn",
        new,
        ModelStage.PRODUCTION,
        PromotionFacts(2, "a2", {}),
        waive,
        superseded=[(old, evaluate(ModelStage.ARCHIVED, archive, waive))],
    )
    assert decision.approved
    assert [(c.version, c.target) for c in decision.changes] == [
        (2, ModelStage.PRODUCTION),
        (1, ModelStage.ARCHIVED),
    ]
    busy = PromotionFacts(
        1,
        "a1",
        {},
        production=ProductionFacts(2, {}),
        traffic=Evidence(False, {"reason": "still serves 50%"}),
    )
    kept = decide_promotion(
        "churn",
        new,
        ModelStage.PRODUCTION,
        PromotionFacts(2, "a2", {}),
        waive,
        superseded=[(old, evaluate(ModelStage.ARCHIVED, busy, waive))],
    )
    assert [c.version for c in kept.changes] == [2]


def test_holders_and_aliases() -> None:
    versions = [
        version(1, ModelStage.ARCHIVED),
        version(2, ModelStage.PRODUCTION),
        version(3, ModelStage.STAGING),
        version(4, ModelStage.STAGING),
        version(5, ModelStage.DEVELOPMENT),
    ]
    held = holders(versions)
    assert held[ModelStage.STAGING] == [4, 3]
    assert aliases(versions) == {"staging": 4, "production": 2}
    assert aliases([version(1, ModelStage.DEVELOPMENT)]) == {}
