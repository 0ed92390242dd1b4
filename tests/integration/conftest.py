"""Integration tests: real MLflow on SQLite in a temp dir, one real local Ray per session."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from fastapi.testclient import TestClient

from app.adapters.health_probes import ArtifactStoreProbe, PingProbe
from app.adapters.mlflow_store import prepare_mlflow_store
from app.adapters.mlflow_tracking import MlflowExperimentTracker
from app.settings import Settings
from testkit.api import build_app
from testkit.auth import Tokens
from testkit.ingress import haproxy_environ
from testkit.service import free_port
from testkit.settings import settings_for
from tests.integration.ml_app import stop_serve

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated MLflow database per session (migrations take seconds); tests copy it."""
    directory = tmp_path_factory.mktemp("mlflow-template")
    database = directory / "mlflow.db"
    prepare_mlflow_store(f"sqlite:///{database}", str(directory / "artifacts"))
    with contextlib.closing(sqlite3.connect(database)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # all in the file, safe to copy
    return database


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture
def settings(tmp_path: Path, tokens: Tokens, mlflow_template: Path) -> Settings:
    data = tmp_path / "data"
    (data / "mlflow" / "artifacts").mkdir(parents=True)
    shutil.copy(mlflow_template, data / "mlflow" / "mlflow.db")
    return settings_for(data, tokens)


def make_tracker(
    settings: Settings, cls: type[MlflowExperimentTracker] = MlflowExperimentTracker
) -> MlflowExperimentTracker:
    return cls(settings.mlflow.tracking_uri, settings.mlflow.artifact_root)


def make_client(settings: Settings, tracker: Any, **kwargs: Any) -> TestClient:
    probes = (
        PingProbe("mlflow_store", tracker.ping),
        ArtifactStoreProbe(settings.mlflow.artifact_root),
    )
    return TestClient(build_app(settings, tracker, probes), **kwargs)


@pytest.fixture
def tracker(settings: Settings) -> MlflowExperimentTracker:
    return make_tracker(settings)


@pytest.fixture
def client(settings: Settings, tracker: MlflowExperimentTracker) -> TestClient:
    return make_client(settings, tracker)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local Ray per test session, in a private temp dir (never a stale cluster), with
    the ingress `scripts/serve` ships: Serve's HAProxy (one Serve for the whole session,
    `tests/integration/ml_app.py`). Whatever HAProxy processes it started are gone after."""
    import ray

    temp_dir = tempfile.mkdtemp(prefix="ray-it-", dir="/tmp")
    environ = pytest.MonkeyPatch()  # undone at the session's end
    for key, value in haproxy_environ(Path(temp_dir) / "haproxy").items():
        environ.setenv(key, value)  # read when Serve's processes start
    # An ingress replica being stopped stays up 30 s (Ray's default) so that load balancers
    # in front of HAProxy can drop it: every application these modules delete would take
    # that long. Nothing stands in front of HAProxy here.
    environ.setenv("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1")
    environ.setenv("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")  # as scripts/serve: one machine
    global _dashboard_url
    context = ray.init(
        address="local",
        num_cpus=8,  # logical slots above the 2 physical cores: replicas idle most of the time
        include_dashboard=True,  # the job API (training tests submit jobs)
        dashboard_port=free_port(),
        _temp_dir=temp_dir,
        logging_level="WARNING",
        runtime_env={"env_vars": {"PYTHONPATH": os.getcwd()}},
    )
    _dashboard_url = f"http://{context.dashboard_url}"
    try:
        yield
    finally:
        proxies = haproxy_processes()
        stop_serve()
        ray.shutdown()
        for process in proxies:  # an orphan of a killed proxy actor, if any
            with contextlib.suppress(psutil.Error):
                process.kill()
        environ.undo()
        shutil.rmtree(temp_dir, ignore_errors=True)


_dashboard_url = ""


@pytest.fixture(scope="session")
def dashboard_url(ray_cluster: None) -> str:
    """The session cluster's dashboard (Serve's and the job API)."""
    return _dashboard_url


def haproxy_processes() -> list[psutil.Process]:
    """The HAProxy processes this session's cluster started (descendants of this process)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.name() == "haproxy":
                found.append(child)
    return found
