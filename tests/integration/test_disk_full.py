"""The data directory's disk full, on a real small filesystem (a tmpfs mounted for the
test: needs root, as CI has): writes answer 503 `storage_full` at once, reads go on,
nothing acknowledged is lost, and writes work again once there is space, with no
restart."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from app.core.access import Role
from testkit.auth import Tokens
from testkit.settings import settings_for
from tests.integration.conftest import make_client, make_tracker

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a filesystem needs root"),
]

BASE = "/api/v1/ml"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the disk says it is full; the file, to free the space later."""
    filler = directory / "filler"
    with filler.open("wb") as handle:
        block = b"\0" * (1 << 20)
        try:
            while True:
                handle.write(block)
                handle.flush()
        except OSError as exc:
            assert exc.errno == 28, exc  # ENOSPC
    return filler


def test_a_full_data_disk_refuses_writes_clearly_and_recovers_when_freed(
    small_disk: Path, tokens: Tokens, mlflow_template: Path
) -> None:
    data = small_disk / "data"
    (data / "mlflow" / "artifacts").mkdir(parents=True)
    shutil.copy(mlflow_template, data / "mlflow" / "mlflow.db")
    settings = settings_for(data, tokens)
    client: TestClient = make_client(settings, make_tracker(settings))
    engineer, viewer = tokens.header(Role.ENGINEER), tokens.header(Role.VIEWER)
    created = client.post(f"{BASE}/experiments", json={"name": "churn"}, headers=engineer)
    assert created.status_code == 201, created.text
    experiment = created.json()["id"]
    first = client.post(
        f"{BASE}/experiments/{experiment}/runs",
        json={"name": "before", "params": {"lr": 0.1}, "metrics": [{"key": "acc", "value": 0.9}]},
        headers=engineer,
    )
    assert first.status_code == 201, first.text

    filler = fill(small_disk)
    metrics = [{"key": f"m{i}", "value": float(i), "step": s} for i in range(50) for s in range(40)]
    statuses = set()
    for attempt in range(3):  # the same answer each time, never a 500 or a hang
        refused = client.post(
            f"{BASE}/experiments/{experiment}/runs",
            json={"name": f"during-{attempt}", "params": {"note": "x" * 200}, "metrics": metrics},
            headers=engineer,
        )
        statuses.add(refused.status_code)
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "storage_full"
        assert "disk" in refused.json()["detail"]
    listed = client.get(f"{BASE}/experiments/{experiment}/runs", headers=viewer)
    assert listed.status_code == 200, listed.text  # reads go on
    assert [r["name"] for r in listed.json()["items"]] == ["before"]

    filler.unlink()  # space again: the next write works, with no restart
    after = client.post(
        f"{BASE}/experiments/{experiment}/runs",
        json={"name": "after", "metrics": [{"key": "acc", "value": 0.95}]},
        headers=engineer,
    )
    assert after.status_code == 201, after.text
    runs = MlflowClient(settings.mlflow.tracking_uri).search_runs([experiment])
    names = {r.info.run_name: r for r in runs}
    assert set(names) >= {"before", "after"}
    assert names["before"].data.metrics == {"acc": 0.9}  # nothing acknowledged was lost
