from datetime import UTC, datetime, timedelta
from typing import Any

from app.core.abtest import Verdict, VerdictStatus
from app.core.audit import AuditEvent, EventType
from app.core.deployment import DeploymentView
from app.core.diagnosis import diagnose
from app.core.features import Freshness
from app.core.findings import Evidence, FindingKind, Severity, ViewFreshness
from app.core.registry import Lineage, ModelStage, ModelVersion
from app.core.routing import Role, RoutingTable, Strategy, Variant
from app.core.semver import ArtifactFacts, SemVer
from app.core.serving_stats import VariantStats, one_request

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC).timestamp()
HOUR = 3600.0


def version(number: int, feature_service: str | None = None) -> ModelVersion:
    at = datetime.fromtimestamp(NOW - 48 * HOUR, UTC)
    return ModelVersion(
        "churn",
        number,
        SemVer(1, number - 1, 0),
        ModelStage.PRODUCTION,
        ArtifactFacts("s", "a", "m"),
        {},
        Lineage("run", "1", feature_service=feature_service),
        "",
        {},
        at,
        "engineer",
        at,
    )


def stats(requests: int, errors: int = 0, latency_ms: float = 5.0) -> VariantStats:
    total = VariantStats()
    for i in range(requests):
        total = total.merge(one_request(latency_ms, ok=i >= errors, at=NOW - 60))
    return total


def deployment(*served: tuple[int, float, VariantStats]) -> DeploymentView:
    variants = tuple(Variant(f"v{v}", v, weight, Role.PRIMARY) for v, weight, _ in served)
    table = RoutingTable("churn", 3, "salt", Strategy.AB, variants)
    return DeploymentView(table, None, {f"v{v}": s for v, _, s in served}, {}, {}, ())


def event(seq: int, kind: EventType, version: int, at: float, **payload: Any) -> AuditEvent:
    when = datetime.fromtimestamp(at, UTC)
    return AuditEvent("churn", seq, when, "engineer", kind, version, payload, "", "")


def evidence(**kw: Any) -> Evidence:
    base: dict[str, Any] = {"model": "churn", "since": NOW - 24 * HOUR, "until": NOW}
    return Evidence(**(base | kw))


def kinds(found: list[Any]) -> list[tuple[str, int | None, str | None, str]]:
    return sorted((f.kind.value, f.version, f.subject, f.severity.value) for f in found)


def drift(*features: str, start: float = NOW - HOUR) -> dict[str, Any]:
    scores = [{"feature": f, "psi": 4.7, "p_value": 1e-9} for f in features]
    return {
        "reference": True,
        "reference_source": "training",
        "drifted": list(features),
        "features": scores,
        "window": {"start": start, "rows": 500},
    }


def test_a_healthy_model_has_nothing_above_info() -> None:
    healthy = evidence(
        versions=(version(1),),
        deployment=deployment((1, 100, stats(300))),
        drift={1: {"reference": True, "drifted": [], "features": [], "window": {}}},
    )
    assert all(f.severity is Severity.INFO for f in diagnose(healthy))
    assert diagnose(healthy) == []


def test_drift_on_two_features_after_a_deploy_is_three_findings_with_their_numbers() -> None:
    deployed = event(7, EventType.DEPLOYED, 1, NOW - HOUR - 40 * 60)
    found = diagnose(
        evidence(
            versions=(version(1),),
            deployment=deployment((1, 100, stats(300))),
            drift={1: drift("tenure_months", "support_calls")},
            events=(deployed,),
        )
    )
    assert kinds(found) == [
        ("drift_after_deploy", 1, "support_calls", "info"),
        ("drift_after_deploy", 1, "tenure_months", "info"),
        ("feature_drift", 1, "support_calls", "warning"),
        ("feature_drift", 1, "tenure_months", "warning"),
    ]
    tenure = next(f for f in found if f.id == "feature_drift-v1-tenure_months")
    assert tenure.numbers["psi"] == 4.7 and tenure.started_at == NOW - HOUR
    assert tenure.links[0] == "/api/v1/ml/models/churn/monitoring"
    after = next(f for f in found if f.id == "drift_after_deploy-feature_drift-v1-tenure_months")
    assert after.numbers["minutes_after_deploy"] == 40 and after.related == (tenure.id,)
    assert found[0].severity is Severity.WARNING  # most severe first


def test_a_worse_candidate_with_a_significant_verdict_is_a_quality_gap() -> None:
    view = deployment((1, 50, stats(3000)), (2, 50, stats(3000)))
    verdict = Verdict(
        VerdictStatus.WINNER, "v1", "v2", "v1", -0.14, (-0.17, -0.11), 1e-6, 1e5, True, 0.6,
        0.05, 0.75, 0.61, 1500, 1500, "significant",
    )  # fmt: skip
    view = DeploymentView(view.table, None, view.stats, {}, {}, (verdict,))
    found = diagnose(evidence(versions=(version(1), version(2)), deployment=view))
    assert kinds(found) == [("quality_gap", 2, "v2", "warning")]
    assert found[0].numbers["candidate_mean"] == 0.61 and found[0].numbers["outcomes"] == [
        1500,
        1500,
    ]


def test_a_rolled_back_canary_in_the_window_and_errors_by_rate() -> None:
    rolled = event(9, EventType.ROLLOUT_ROLLED_BACK, 2, NOW - 2 * HOUR, reason="error rate 50%")
    old = event(3, EventType.ROLLOUT_ROLLED_BACK, 2, NOW - 30 * HOUR, reason="outside")
    view = deployment((1, 100, stats(400)), (2, 0, stats(100, errors=50)))
    found = diagnose(evidence(versions=(version(1),), deployment=view, events=(rolled, old)))
    assert kinds(found) == [("canary_rolled_back", 2, None, "warning")]  # v2 serves nothing now
    failing = deployment((1, 90, stats(400, errors=2)), (2, 10, stats(100, errors=10)))
    rates = diagnose(evidence(versions=(version(1),), deployment=failing))
    assert kinds(rates) == [("error_rate", 2, "v2", "critical")]  # v1's 0.5% is under 1%


def test_stale_features_of_a_live_version_and_the_drift_while_stale() -> None:
    ends = datetime.fromtimestamp(NOW - 5 * HOUR, UTC)
    views = (
        ViewFreshness("customer_stats", Freshness.STALE, ends, timedelta(hours=2)),
        ViewFreshness("fresh_view", Freshness.FRESH, ends, timedelta(days=1)),
    )
    found = diagnose(
        evidence(
            versions=(version(1, "churn_v1"),),
            deployment=deployment((1, 100, stats(300))),
            services={"churn_v1": views},
            drift={1: drift("tenure_months")},
        )
    )
    assert kinds(found) == [
        ("drift_after_stale_features", 1, "tenure_months", "info"),
        ("feature_drift", 1, "tenure_months", "warning"),
        ("stale_features", 1, "churn_v1", "warning"),
    ]
    stale = next(f for f in found if f.kind is FindingKind.STALE_FEATURES)
    assert stale.started_at == NOW - 3 * HOUR and "for 3.0 h" in stale.title
    assert set(stale.numbers["views"]) == {"customer_stats"}


def test_one_version_and_ids_are_stable() -> None:
    both = evidence(
        versions=(version(1), version(2)),
        deployment=deployment((1, 50, stats(300)), (2, 50, stats(300))),
        drift={1: drift("tenure_months"), 2: drift("monthly_charges")},
    )
    assert [f.id for f in diagnose(both, only_version=2)] == ["feature_drift-v2-monthly_charges"]
    assert [f.id for f in diagnose(both)] == [f.id for f in diagnose(both)]
