"""The MLflow tracking database: created and migrated once, before any server uses it."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path


def prepare_mlflow_store(tracking_uri: str, artifact_root: str) -> None:
    """Create the tracking database (running MLflow's migrations) before any server uses it.

    Run once, from the application builder: two processes migrating one fresh SQLite file
    at the same time would race. Non-database URIs (a remote MLflow server) are left alone.
    """
    if not tracking_uri.split(":", 1)[0].startswith(("sqlite", "postgresql", "mysql", "mssql")):
        return
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if "://" not in artifact_root:
        Path(artifact_root).mkdir(parents=True, exist_ok=True)
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(tracking_uri, artifact_root)
    if tracking_uri.startswith("sqlite:///"):
        _use_write_ahead_log(Path(tracking_uri.removeprefix("sqlite:///")))


def _use_write_ahead_log(database: Path) -> None:
    """Switch the SQLite file to WAL mode (persistent): the ingress and MLflow's server write
    it from two processes, and WAL lets readers proceed during a write and makes each commit
    one append instead of a journal rewrite."""
    with contextlib.closing(sqlite3.connect(database)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
