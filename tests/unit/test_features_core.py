"""Freshness and lookup checks of the feature catalog (pure values)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app.core.features import (
    Catalog,
    EntityInfo,
    FeatureInfo,
    FeatureServiceInfo,
    FeatureViewInfo,
    Freshness,
    freshness,
    plan_lookup,
    service_signature,
)

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def view(name: str, *features: str, on_demand: bool = False, inputs: tuple[str, ...] = ()) -> Any:
    return FeatureViewInfo(
        name=name,
        entities=("customer",),
        join_keys=("customer_id",),
        features=tuple(FeatureInfo(f, "Float64") for f in features),
        ttl=timedelta(days=1),
        source=None,
        on_demand=on_demand,
        description="",
        tags={},
        last_materialized=None,
        freshness=None,
        request_inputs=inputs,
    )


CATALOG = Catalog(
    project="churn",
    entities=(EntityInfo("customer", ("customer_id",), "INT64", ""),),
    feature_views=(
        view("stats", "age", "tenure"),
        view("ratios", "net", on_demand=True, inputs=("discount",)),
    ),
    feature_services=(
        FeatureServiceInfo("v1", ("stats:age", "stats:tenure"), ""),
        FeatureServiceInfo("v2", ("stats:age", "ratios:net"), ""),
    ),
)


def test_freshness() -> None:
    day = timedelta(days=1)
    assert freshness(None, day, NOW) is Freshness.NEVER_MATERIALIZED
    assert freshness(NOW - timedelta(hours=23), day, NOW) is Freshness.FRESH
    assert freshness(NOW - timedelta(hours=25), day, NOW) is Freshness.STALE
    assert freshness(NOW - timedelta(days=400), None, NOW) is Freshness.FRESH  # no TTL


def test_a_good_lookup_has_no_problems() -> None:
    lookup = plan_lookup(CATALOG, [{"customer_id": 1}], None, "v1")
    assert lookup.features == ("stats:age", "stats:tenure") and not lookup.problems
    lookup = plan_lookup(CATALOG, [{"customer_id": 1, "discount": 2.0}], None, "v2")
    assert lookup.request_inputs == ("discount",) and not lookup.problems


def test_bad_lookups_name_the_field() -> None:
    def fields(*args: Any) -> list[str]:
        return [p.field for p in plan_lookup(CATALOG, *args).problems]

    assert fields([{"customer_id": 1}], ["stats:height"], None) == ["features[0]"]
    assert fields([{"customer_id": 1}], ["age"], None) == ["features[0]"]
    assert fields([{"user": 1}], ["stats:age"], None) == ["entities[0]", "entities[0]"]
    assert fields([{"customer_id": 1}], None, "v2") == ["entities[0]"]  # no discount
    assert fields([{"customer_id": 1}], None, "v9") == ["feature_service"]


def test_service_signature_is_the_contract() -> None:
    assert service_signature(CATALOG, "v1") == (
        ("stats:age", "Float64"),
        ("stats:tenure", "Float64"),
    )
    assert service_signature(CATALOG, "v9") is None
