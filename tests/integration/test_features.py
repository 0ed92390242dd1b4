"""The feature store on a real Feast repository (the project's own `configs/feature_repo`):
catalog and freshness, point-in-time training sets, online serving through the API
against Feast's own SDK. No Ray needed: the API runs in process."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.adapters.feast_store import STATS_FILE, FeastFeatures
from app.core.access import Role
from app.services.container import Services
from app.services.features import Features
from testkit.api import StubTracker, api_for
from testkit.auth import Tokens
from testkit.settings import CONFIGS, settings_for

pytestmark = pytest.mark.integration

BASE = "/api/v1/ml"
REPO = CONFIGS / "feature_repo"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


class Clock:
    """Now, moved by the tests."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Repo:
    feast: FeastFeatures
    clock: Clock
    http: TestClient
    tokens: Tokens


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    directory = tmp_path_factory.mktemp("feast")
    from app.adapters.feast_store import write_demo_data

    write_demo_data(directory / "feast", customers=200, days=5, end=NOW)
    clock = Clock(NOW)
    feast = FeastFeatures(REPO, directory / "feast", clock=clock)
    feast.start(demo_data=False)
    tokens = Tokens()
    settings = settings_for(directory / "data", tokens)
    services = Services(tracker=StubTracker(), features=Features(feast, catalog_ttl_s=0.001))
    app = api_for(settings, services)
    with TestClient(app) as http:
        yield Repo(feast, clock, http, tokens)


def view(catalog: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in catalog["feature_views"] if v["name"] == name)


def test_the_catalog_and_freshness_from_never_to_fresh_to_stale(repo: Repo) -> None:
    viewer, engineer = repo.tokens.header(Role.VIEWER), repo.tokens.header(Role.ENGINEER)
    catalog = repo.http.get(f"{BASE}/features", headers=viewer).json()
    assert catalog["project"] == "churn"
    assert [(e["name"], e["join_keys"]) for e in catalog["entities"]] == [
        ("customer", ["customer_id"])
    ]
    stats = view(catalog, "customer_stats")
    assert [f["name"] for f in stats["features"]] == [
        "tenure_months",
        "monthly_charges",
        "support_calls",
        "contract_months",
        "fiber",
        "age",
    ]
    assert {f["dtype"] for f in stats["features"]} == {"Float64"}
    assert stats["ttl_seconds"] == 2 * 86400 and STATS_FILE in stats["source"]
    assert stats["freshness"] == "never_materialized" and stats["last_materialized"] is None
    ratios = view(catalog, "customer_ratios")
    assert ratios["on_demand"] and ratios["request_inputs"] == ["discount"]
    assert ratios["join_keys"] == ["customer_id"]
    services = {s["name"]: s["features"] for s in catalog["feature_services"]}
    assert services["churn_v1"] == [f"customer_stats:{f['name']}" for f in stats["features"]]
    assert "customer_ratios:net_charges" in services["churn_v2"]

    assert repo.http.post(f"{BASE}/features/materialize", headers=viewer).status_code == 403
    done = repo.http.post(f"{BASE}/features/materialize", headers=engineer)
    assert done.status_code == 200, done.text
    assert done.json()["freshness"] == {"customer_stats": "fresh"}
    catalog = repo.http.get(f"{BASE}/features", headers=viewer).json()
    assert view(catalog, "customer_stats")["freshness"] == "fresh"
    assert view(catalog, "customer_stats")["last_materialized"].startswith("2026-11-20T12:00")

    repo.clock.now = NOW + timedelta(days=2, minutes=1)  # the TTL has passed
    catalog = repo.http.get(f"{BASE}/features", headers=viewer).json()
    assert view(catalog, "customer_stats")["freshness"] == "stale"
    repo.clock.now = NOW


def test_serve_returns_what_feasts_own_sdk_returns(repo: Repo) -> None:
    repo.feast.materialize(NOW)
    rows = [{"customer_id": i} for i in (3, 0, 150, 7)]
    answer = repo.http.post(
        f"{BASE}/features/serve",
        json={"feature_service": "churn_v1", "entities": rows},
        headers=repo.tokens.header(Role.VIEWER),
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    sdk = repo.feast.store.get_online_features(
        features=repo.feast.store.get_feature_service("churn_v1"), entity_rows=rows
    ).to_dict()
    for index, row in enumerate(body["rows"]):
        assert row["customer_id"] == rows[index]["customer_id"]
        for feature in ("tenure_months", "monthly_charges", "support_calls", "age"):
            assert row[f"customer_stats:{feature}"] == sdk[feature][index]
        assert set(body["statuses"][index].values()) == {"present"}
    latest = pd.read_parquet(repo.feast.feast_dir / STATS_FILE)
    latest = latest[latest.customer_id == 3].sort_values("event_timestamp").iloc[-1]
    assert body["rows"][0]["customer_stats:monthly_charges"] == latest["monthly_charges"]


def test_missing_values_are_null_with_a_status_and_bad_lookups_are_4xx(repo: Repo) -> None:
    repo.feast.materialize(NOW)
    viewer = repo.tokens.header(Role.VIEWER)

    def serve(body: dict[str, Any]) -> Any:
        return repo.http.post(f"{BASE}/features/serve", json=body, headers=viewer)

    unknown_customer = serve(
        {
            "features": ["customer_stats:age"],
            "entities": [{"customer_id": 1}, {"customer_id": 10**9}],
        }
    ).json()
    assert unknown_customer["rows"][1]["customer_stats:age"] is None
    assert unknown_customer["statuses"] == [
        {"customer_stats:age": "present"},
        {"customer_stats:age": "not_found"},
    ]
    on_demand = serve(
        {"feature_service": "churn_v2", "entities": [{"customer_id": 1, "discount": 5.0}]}
    ).json()
    row = on_demand["rows"][0]
    assert row["customer_ratios:net_charges"] == pytest.approx(
        row["customer_stats:monthly_charges"] - 5.0
    )

    cases = [
        ({"features": ["customer_stats:height"], "entities": [{"customer_id": 1}]}, "features[0]"),
        ({"features": ["nope:age"], "entities": [{"customer_id": 1}]}, "features[0]"),
        ({"features": ["customer_stats:age"], "entities": [{"user_id": 1}]}, "entities[0]"),
        (
            {"features": ["customer_stats:age"], "entities": [{"customer_id": "7"}]},
            "entities[0].customer_id",
        ),
        ({"feature_service": "churn_v2", "entities": [{"customer_id": 1}]}, "entities[0]"),
        ({"features": ["customer_stats:age"], "entities": []}, "entities"),
        ({"entities": [{"customer_id": 1}]}, "body"),
    ]
    for body, field in cases:
        answer = serve(body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert field in [e["field"] for e in answer.json()["errors"]], answer.json()
    missing = serve({"feature_service": "churn_v9", "entities": [{"customer_id": 1}]})
    assert missing.status_code == 404
    assert missing.json()["code"] == "feature_service_not_found"
    assert repo.http.post(f"{BASE}/features/serve", json={}).status_code == 401


def test_point_in_time_training_set_never_uses_later_values_and_keeps_every_row(
    tmp_path: Path,
) -> None:
    """Hand-made data: customer 1 has a value before and after the label; customer 2 has
    none before its label; customer 3 has none at all; two identical label rows."""
    directory = tmp_path / "feast"
    directory.mkdir()
    t = NOW - timedelta(days=1)
    stats = pd.DataFrame(
        {
            "customer_id": [1, 1, 2],
            "tenure_months": [10.0, 99.0, 5.0],
            "monthly_charges": [50.0, 51.0, 60.0],
            "support_calls": [0.0, 9.0, 1.0],
            "contract_months": [12.0, 12.0, 1.0],
            "fiber": [0.0, 0.0, 1.0],
            "age": [30.0, 30.0, 40.0],
            "event_timestamp": [
                t - timedelta(hours=2),
                t + timedelta(hours=1),
                t + timedelta(hours=3),
            ],
        }
    )
    stats["created"] = stats["event_timestamp"]
    for column in ("event_timestamp", "created"):
        stats[column] = stats[column].astype("datetime64[us, UTC]")
    stats.to_parquet(directory / STATS_FILE, index=False)
    feast = FeastFeatures(REPO, directory)
    feast.start(demo_data=False)
    labels = pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 1],
            "event_timestamp": pd.Series([t, t, t, t]).astype("datetime64[us, UTC]"),
            "churned": [1, 0, 0, 1],
        }
    )
    frame = feast.historical(labels, "churn_v1")
    assert len(frame) == len(labels) == 4  # every entity row, duplicates included
    by_customer = frame.groupby("customer_id")["tenure_months"].agg(list).to_dict()
    assert by_customer[1] == [10.0, 10.0]  # the value known at the label time, never 99
    assert pd.isna(by_customer[2][0])  # its only value came after the label
    assert pd.isna(by_customer[3][0])  # no value at all, but the row is there


def test_concurrent_materializations_take_turns_and_all_succeed(repo: Repo) -> None:
    """Feast's DuckDB offline store shares one connection per process, which refuses a
    second call while one runs: four materializations at once used to fail (500)."""
    engineer = repo.tokens.header(Role.ENGINEER)
    end = {"end": NOW.isoformat()}

    def materialize(_: int) -> int:
        answer = repo.http.post(f"{BASE}/features/materialize", json=end, headers=engineer)
        return answer.status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(materialize, range(4)))
    assert statuses == [200] * 4
