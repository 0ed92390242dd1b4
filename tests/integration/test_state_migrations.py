"""The service database's migrations on a real PostgreSQL server: a database of the
release before migrations keeps every row, and processes starting at once all succeed."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from app.adapters.monitor_store import SqlMonitorStore
from app.adapters.registry_store import SqlRegistryStore
from app.adapters.state_database import migration_config
from app.adapters.state_migrations import state_metadata
from app.adapters.traffic_store import SqlTrafficStore
from app.core.audit import verify
from app.core.gates import Approval
from app.core.registry import RegistryWrite
from tests.fixtures.release_db import RELEASE_ROWS, load_release_db, row_counts
from tests.integration.postgres_server import postgres_server

pytestmark = pytest.mark.integration

HEAD = tuple(ScriptDirectory.from_config(migration_config()).get_heads())


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture
def url(postgres_url: str) -> str:
    """An empty database (a clean schema per test)."""
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return postgres_url


def revision(url: str) -> tuple[str, ...]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        heads = MigrationContext.configure(conn).get_current_heads()
    engine.dispose()
    return tuple(heads)


def test_an_empty_database_is_created_at_the_head(url: str) -> None:
    SqlMonitorStore(url)
    assert revision(url) == HEAD
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), state_metadata()) == []
    engine.dispose()


def test_a_database_of_the_release_before_keeps_every_row(url: str) -> None:
    load_release_db(url)
    registry = SqlRegistryStore(url)
    traffic, monitor = SqlTrafficStore(url), SqlMonitorStore(url)
    assert revision(url) == HEAD
    assert row_counts(url) == RELEASE_ROWS

    state = registry.load()
    assert state.models["churn"].description == "Churn — 30 days"
    assert state.versions["churn"][2].tags["note"] == 'quoted "value" and it\'s fine'
    assert verify(registry.events("churn")).valid and verify(registry.events("fraud")).valid
    assert registry.events("churn")[3].payload == {"note": "é", "semver": "1.1.0"}
    assert traffic.load().p_values == {("churn", "exp-3", "v2"): 0.0371}
    ref = traffic.ref("req-2")
    assert ref is not None and ref.predictions == (0.25, "it's")
    assert monitor.retrains("churn") == [("raysubmit_abc123", "al-1", 1793613601.123456)]

    approval = Approval(2, "art-churn-2", "erin", state.approvals["churn"][0].at, "")
    registry.write(RegistryWrite(approvals=(("churn", approval),)))  # the sequence follows
    assert [a.approver for a in registry.load().approvals["churn"]] == ["carol", "dave", "erin"]


def _start(url: str, starting: Any, store: int) -> None:
    """One actor's process starting: the three open their stores at the same moment."""
    starting.wait()
    (SqlRegistryStore, SqlTrafficStore, SqlMonitorStore)[store](url)


@pytest.mark.parametrize("made_by", ["nothing", "release"])
def test_processes_starting_at_once_all_succeed(made_by: str, url: str) -> None:
    if made_by == "release":
        load_release_db(url)
    context = multiprocessing.get_context("spawn")
    starting = context.Barrier(3)
    processes = [context.Process(target=_start, args=(url, starting, i)) for i in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    assert revision(url) == HEAD
    expected = RELEASE_ROWS if made_by == "release" else dict.fromkeys(RELEASE_ROWS, 0)
    assert row_counts(url) == expected
