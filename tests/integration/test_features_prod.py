"""The feature store in the production profile, on a private `scripts/stack`: Feast's SQL
registry on PostgreSQL, its Redis online store, the offline parquet in the S3 bucket read
through the node-local cache. Built as the service builds it (`configs/prod.yaml`,
`deployments.composition.feature_store`); the API in process. No Ray.
"""

from __future__ import annotations

import io
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.adapters.feast_store import (
    FEAST_DIR_ENV,
    LABELS_FILE,
    OFFLINE_PREFIX,
    STATS_FILE,
    FeastFeatures,
    OfflineFiles,
)
from app.adapters.health_probes import FeatureOnlineStoreProbe
from app.adapters.storage import ArrowStorage, open_storage, parquet_bytes
from app.core.access import Role
from app.errors import ErrorCode, Unavailable
from app.services.container import Services
from app.services.features import Features
from app.settings import Settings, load_settings
from deployments.composition import feature_store
from testkit.api import StubTracker, api_for
from testkit.auth import Tokens
from testkit.settings import CONFIGS
from testkit.stack import BUCKET, Stack, local_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE = "/api/v1/ml"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
CUSTOMERS, DAYS = 200, 5
STATS_KEY, LABELS_KEY = f"{OFFLINE_PREFIX}/{STATS_FILE}", f"{OFFLINE_PREFIX}/{LABELS_FILE}"
FEATURES = [
    "tenure_months",
    "monthly_charges",
    "support_calls",
    "contract_months",
    "fiber",
    "age",
]
OUTAGE_S = 5.0  # a stopped or hung Redis: down / 503 within this
# What the stack's server needs from the environment (its stack.env lines).
STACK_VARIABLES = (
    "ML_FEAST_REGISTRY_URL",
    "ML_FEAST_REDIS",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_REQUEST_CHECKSUM_CALCULATION",
    "AWS_RESPONSE_CHECKSUM_VALIDATION",
)


@dataclass
class Prod:
    stack: Stack
    settings: Settings
    storage: ArrowStorage
    feast: FeastFeatures
    http: TestClient
    tokens: Tokens

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def cache(self) -> Path:
        return self.settings.storage.cache_dir / OFFLINE_PREFIX

    def serve(self, body: dict[str, Any]) -> Any:
        headers = self.tokens.header(Role.VIEWER)
        return self.http.post(f"{BASE}/features/serve", json=body, headers=headers)


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prod]:
    with local_stack() as stack, pytest.MonkeyPatch.context() as env:
        variables = stack.settings()
        for name in STACK_VARIABLES:
            env.setenv(name, variables[name])
        env.delenv(FEAST_DIR_ENV, raising=False)  # restored afterwards: start() sets it
        tokens = Tokens()
        settings = load_settings(
            CONFIGS,
            "prod",
            {
                "data_dir": str(tmp_path_factory.mktemp("prod") / "data"),
                "auth": {"tokens": tokens.entries()},
                "storage": {
                    "uri": variables["ML_STORAGE__URI"],
                    "endpoint_url": variables["ML_STORAGE__ENDPOINT_URL"],
                },
                "features": {"repo_dir": str(CONFIGS / "feature_repo")},
            },
        )
        storage = open_storage(settings.storage)
        OfflineFiles(storage, settings.storage.cache_dir).write_demo(CUSTOMERS, DAYS, NOW)
        feast = feature_store(settings, storage)
        feast.start(demo_data=settings.features.demo_data)
        services = Services(
            tracker=StubTracker(),
            probes=(FeatureOnlineStoreProbe(feast.ping),),
            features=Features(feast, catalog_ttl_s=0.001),
        )
        with TestClient(api_for(settings, services)) as http:
            yield Prod(stack, settings, storage, feast, http, tokens)


def stored_frame(prod: Prod, key: str) -> pd.DataFrame:
    """A parquet file as the bucket holds it (boto3: not through the service's code)."""
    body = prod.stack.s3().get_object(Bucket=BUCKET, Key=f"data/{key}")["Body"].read()
    return pd.read_parquet(io.BytesIO(body))


def latest_rows(stats: pd.DataFrame, before: datetime | None = None) -> pd.DataFrame:
    """Each customer's newest snapshot (strictly before `before`, when given)."""
    if before is not None:
        stats = stats[stats.event_timestamp < pd.Timestamp(before)]
    return (
        stats.sort_values("event_timestamp").groupby("customer_id").tail(1).set_index("customer_id")
    )


def only_the_cache_under(data_dir: Path, cache: Path) -> list[str]:
    """What lies under the data directory outside the node-local cache."""
    return sorted(
        str(p.relative_to(data_dir))
        for p in data_dir.rglob("*")
        if p.is_file() and not p.is_relative_to(cache)
    )


def online_values(prod: Prod, customers: list[int]) -> dict[int, dict[str, Any]]:
    """The churn_v1 values the API serves, by customer; every status must be `present`."""
    answer = prod.serve(
        {"feature_service": "churn_v1", "entities": [{"customer_id": c} for c in customers]}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    wanted = {f"customer_stats:{f}" for f in FEATURES}
    for statuses in body["statuses"]:
        assert statuses == dict.fromkeys(wanted, "present")  # nothing but what was asked
    return {
        row["customer_id"]: {f: row[f"customer_stats:{f}"] for f in FEATURES}
        for row in body["rows"]
    }


def test_registry_on_postgres_online_on_redis_offline_in_the_bucket(prod: Prod) -> None:
    config = prod.feast.store.config
    assert type(config.registry).__name__ == "SqlRegistryConfig"
    assert config.registry.path.startswith("postgresql+psycopg://")
    assert config.online_store.type == "redis"
    redis = prod.stack.settings()["ML_FEAST_REDIS"]
    assert config.online_store.connection_string == (
        f"{redis},socket_connect_timeout=2,socket_timeout=2"
    )

    listed = prod.stack.s3().list_objects_v2(Bucket=BUCKET, Prefix=f"data/{OFFLINE_PREFIX}/")
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        f"data/{LABELS_KEY}",
        f"data/{STATS_KEY}",
    ]
    assert only_the_cache_under(prod.data_dir, prod.cache) == []
    assert not (prod.data_dir / "feast").exists()
    assert (prod.cache / STATS_FILE).read_bytes() == prod.storage.read_bytes(STATS_KEY)

    # Another process's store (a replica, a job) finds the definitions in PostgreSQL.
    other = feature_store(prod.settings)
    stats = next(v for v in other.catalog().feature_views if v.name == "customer_stats")
    assert stats.source is not None and str(prod.cache / STATS_FILE) in stats.source
    assert [f.name for f in stats.features] == FEATURES


def test_incremental_materialization_serves_the_stored_rows_from_redis(prod: Prod) -> None:
    done = prod.feast.materialize(NOW)
    assert done == [("customer_stats", NOW - timedelta(days=2), NOW)]
    assert int(prod.stack.redis_cli("dbsize")) >= CUSTOMERS

    customers = [3, 0, 150, 7]
    latest = latest_rows(stored_frame(prod, STATS_KEY))
    served = online_values(prod, customers)
    for customer in customers:
        assert served[customer] == {f: latest.loc[customer, f] for f in FEATURES}

    on_demand = prod.serve(
        {"feature_service": "churn_v2", "entities": [{"customer_id": 3, "discount": 5.0}]}
    )
    assert on_demand.status_code == 200, on_demand.text
    row = on_demand.json()["rows"][0]
    assert row["customer_ratios:net_charges"] == pytest.approx(
        latest.loc[3, "monthly_charges"] - 5.0
    )


def test_ranged_materialization_writes_the_window(prod: Prod) -> None:
    prod.stack.redis_cli("flushall")
    start, end = NOW - timedelta(days=4, hours=1), NOW - timedelta(days=2, hours=1)
    assert prod.feast.materialize(end, start=start) == [("customer_stats", start, end)]

    in_window = latest_rows(stored_frame(prod, STATS_KEY), before=end)
    assert set(in_window.event_timestamp) == {pd.Timestamp(NOW - timedelta(days=3))}
    served = online_values(prod, [3, 150])
    for customer in (3, 150):
        assert served[customer] == {f: in_window.loc[customer, f] for f in FEATURES}

    prod.feast.materialize(NOW, start=NOW - timedelta(days=2))  # back to the newest


def test_the_training_set_is_point_in_time_correct(prod: Prod) -> None:
    labels = stored_frame(prod, LABELS_KEY).head(60)
    frame = prod.feast.historical(labels, "churn_v1")
    assert len(frame) == len(labels)

    stats = stored_frame(prod, STATS_KEY).sort_values("event_timestamp")
    expected = pd.merge_asof(
        labels.sort_values("event_timestamp"),
        stats[["customer_id", "event_timestamp", *FEATURES]],
        on="event_timestamp",
        by="customer_id",
        tolerance=pd.Timedelta(days=2),  # the view's TTL
    )
    got = frame.sort_values(["customer_id", "event_timestamp"]).reset_index(drop=True)
    want = expected.sort_values(["customer_id", "event_timestamp"]).reset_index(drop=True)
    assert got[FEATURES].notna().all().all()
    pd.testing.assert_frame_equal(got[["customer_id", *FEATURES]], want[["customer_id", *FEATURES]])


def test_the_cache_follows_the_stored_files(prod: Prod) -> None:
    cached = prod.cache / STATS_FILE
    before = cached.stat().st_ino
    assert prod.feast.offline_dir() == prod.cache
    assert cached.stat().st_ino == before  # nothing changed: nothing downloaded

    stats = stored_frame(prod, STATS_KEY)
    later = stats[stats.customer_id == 3].tail(1).copy()
    later["event_timestamp"] = later["created"] = pd.Timestamp(NOW + timedelta(hours=1))
    later["monthly_charges"] = 1234.5
    prod.storage.write_bytes(STATS_KEY, parquet_bytes(pd.concat([stats, later])))
    prod.feast.materialize(NOW + timedelta(hours=2))
    assert cached.read_bytes() == prod.storage.read_bytes(STATS_KEY)
    assert online_values(prod, [3])[3]["monthly_charges"] == 1234.5

    # Same size, same second: the ETag tells; a file gone from the bucket leaves the cache.
    offline = OfflineFiles(prod.storage, prod.settings.storage.cache_dir)
    note = f"{OFFLINE_PREFIX}/notes/readme.txt"
    prod.storage.write_bytes(note, b"one")
    assert (offline.directory() / "notes" / "readme.txt").read_bytes() == b"one"
    prod.storage.write_bytes(note, b"two")
    assert (offline.directory() / "notes" / "readme.txt").read_bytes() == b"two"
    prod.storage.delete(note)
    assert not (offline.directory() / "notes" / "readme.txt").exists()

    assert only_the_cache_under(prod.data_dir, prod.cache) == []


def health(prod: Prod) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    answer = prod.http.get(f"{BASE}/health")
    component = next(c for c in answer.json()["components"] if c["name"] == "feature_online_store")
    return answer.status_code, component, time.monotonic() - started


def test_a_stopped_redis_is_down_and_a_503_within_seconds_then_recovers(prod: Prod) -> None:
    code, component, _ = health(prod)
    assert (code, component["status"], component["detail"]) == (200, "ok", "redis")
    assert component["required"] is True
    expected = online_values(prod, [3, 7])

    prod.stack.run("stop", "redis")
    try:
        code, component, elapsed = health(prod)
        assert (code, component["status"]) == (503, "down") and elapsed < OUTAGE_S
        started = time.monotonic()
        answer = prod.serve({"feature_service": "churn_v1", "entities": [{"customer_id": 3}]})
        assert time.monotonic() - started < OUTAGE_S
        assert answer.status_code == 503
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["code"] == "feature_store_unavailable"
        with pytest.raises(Unavailable) as raised:
            prod.feast.online([{"customer_id": 3}], ["customer_stats:age"])
        assert raised.value.code is ErrorCode.FEATURE_STORE_UNAVAILABLE
        started = time.monotonic()
        with pytest.raises(Unavailable) as raised:  # rows to write, nowhere to write them
            prod.feast.materialize(NOW, start=NOW - timedelta(days=1))
        assert raised.value.code is ErrorCode.FEATURE_STORE_UNAVAILABLE
        assert time.monotonic() - started < OUTAGE_S
    finally:
        prod.stack.run("start", "redis")

    code, component, _ = health(prod)  # the same store object: its client reconnects
    assert (code, component["status"]) == (200, "ok")
    assert online_values(prod, [3, 7]) == expected


def test_the_first_registry_read_after_postgresql_restarts_succeeds(prod: Prod) -> None:
    """The registry's pooled connections die with the server; each is checked before use
    (`pool_pre_ping`), so no read after the restart fails on one of them."""
    views = [v.name for v in prod.feast.catalog().feature_views]
    assert "customer_stats" in views

    prod.stack.run("stop", "postgres")
    prod.stack.run("start", "postgres")

    # read straight from the registry (no cache): the first use of the pool after the restart
    assert [v.name for v in prod.feast.catalog().feature_views] == views


def test_a_hung_redis_times_out_instead_of_hanging(prod: Prod) -> None:
    expected = online_values(prod, [7])
    pid = prod.stack.pid("redis")
    os.kill(pid, signal.SIGSTOP)  # accepts connections (the kernel does), never answers
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable) as raised:
            prod.feast.online([{"customer_id": 7}], ["customer_stats:age"])
        assert raised.value.code is ErrorCode.FEATURE_STORE_UNAVAILABLE
        assert time.monotonic() - started < OUTAGE_S
        code, component, elapsed = health(prod)
        assert (code, component["status"]) == (503, "down") and elapsed < OUTAGE_S
    finally:
        os.kill(pid, signal.SIGCONT)
    assert online_values(prod, [7]) == expected
