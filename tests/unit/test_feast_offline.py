"""The feature store's pieces that need no Feast, Redis or S3: the Redis connection
string's timeouts, the offline data on a local storage (used in place, never copied), the
online store's health probe. The S3 cache runs for real in
tests/integration/test_features_prod.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from app.adapters.feast_store import (
    LABELS_FILE,
    STATS_FILE,
    OfflineFiles,
    redis_connection,
)
from app.adapters.health_probes import FeatureOnlineStoreProbe
from app.adapters.storage import open_storage
from app.ports.health import HealthStatus
from app.settings import StorageSettings

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("redis:6379", "redis:6379,socket_connect_timeout=2,socket_timeout=2"),
        (
            "redis:6379,ssl=true,password=x=y",
            "redis:6379,ssl=true,password=x=y,socket_connect_timeout=2,socket_timeout=2",
        ),
        ("redis:6379,socket_timeout=10", "redis:6379,socket_timeout=10,socket_connect_timeout=2"),
        (
            "redis:6379, socket_connect_timeout=1,socket_timeout=0.5",
            "redis:6379, socket_connect_timeout=1,socket_timeout=0.5",
        ),
    ],
)
def test_redis_gets_timeouts_unless_its_connection_string_sets_them(
    given: str, expected: str
) -> None:
    assert redis_connection(given, 2.0) == expected


def test_fractional_timeouts_are_written_as_numbers() -> None:
    assert redis_connection("r:1", 0.5) == "r:1,socket_connect_timeout=0.5,socket_timeout=0.5"


def test_a_local_storage_holds_the_offline_data_in_place(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    storage = open_storage(StorageSettings(uri=str(data_dir), cache_dir=data_dir / "cache"))
    offline = OfflineFiles(storage, data_dir / "cache")

    offline.write_demo(customers=20, days=2, end=NOW)
    directory = offline.directory()

    assert directory == data_dir / "feast"  # today's <data_dir>/feast, as before
    assert sorted(p.name for p in directory.iterdir()) == sorted([LABELS_FILE, STATS_FILE])
    assert not (data_dir / "cache").exists()  # nothing copied
    stats = pd.read_parquet(directory / STATS_FILE)
    assert len(stats) == 40 and stats.event_timestamp.max() == pd.Timestamp(NOW)


def test_demo_data_is_written_only_when_missing(tmp_path: Path) -> None:
    storage = open_storage(StorageSettings(uri=str(tmp_path), cache_dir=tmp_path / "cache"))
    storage.write_bytes(f"feast/{STATS_FILE}", b"kept")
    OfflineFiles(storage, tmp_path / "cache").write_demo(customers=10, days=1, end=NOW)

    assert storage.read_bytes(f"feast/{STATS_FILE}") == b"kept"
    assert len(pd.read_parquet(tmp_path / "feast" / LABELS_FILE)) == 10


def test_the_online_store_probe_is_required_and_reports_the_error_type() -> None:
    ok = FeatureOnlineStoreProbe(lambda: "redis").probe()
    assert (ok.name, ok.status, ok.detail, ok.required) == (
        "feature_online_store",
        HealthStatus.OK,
        "redis",
        True,
    )

    def refused() -> str:
        raise ConnectionError("Error 111 connecting to 10.0.0.1:6379 (password=secret)")

    down = FeatureOnlineStoreProbe(refused).probe()
    assert (down.status, down.detail) == (HealthStatus.DOWN, "ConnectionError")
