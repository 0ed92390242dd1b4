"""The service database's migrations, on a SQLite file: an empty database is created at
the head, a database of the release before migrations keeps every row, and repeated or
concurrent start-ups and a schema newer than the code are handled."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from app.adapters.monitor_store import SqlMonitorStore, policies_table
from app.adapters.registry_store import SqlRegistryStore, models_table
from app.adapters.state_database import (
    StateSchemaError,
    migration_config,
    state_engine,
    upgrade_state_database,
)
from app.adapters.state_migrations import state_metadata
from app.adapters.traffic_store import SqlTrafficStore, tables_table
from app.core.audit import verify
from app.core.gates import Approval
from app.core.lifecycle import ModelStage
from app.core.monitoring import AlertState
from app.core.registry import RegistryWrite
from tests.fixtures.release_db import RELEASE_ROWS, load_release_db, row_counts

STORES = (models_table.metadata, tables_table.metadata, policies_table.metadata)
OPEN_STORE: tuple[Callable[[str], Any], ...] = (SqlRegistryStore, SqlTrafficStore, SqlMonitorStore)
ADDED_SINCE_RELEASE = {"api_tokens", "ix_api_tokens_created_at", "idempotency_claims"}  # 0002
HEAD = tuple(ScriptDirectory.from_config(migration_config()).get_heads())


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'service.db'}"


@pytest.fixture
def release_url(tmp_path: Path) -> str:
    """A database as release 0231c5a left it: its tables and rows, no alembic_version."""
    (tmp_path / "state").mkdir()
    url = f"sqlite:///{tmp_path / 'state' / 'service.db'}"
    load_release_db(url)
    return url


def revision(url: str) -> tuple[str, ...]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        heads = MigrationContext.configure(conn).get_current_heads()
    engine.dispose()
    return tuple(heads)


def schema(url: str) -> dict[str, str]:
    """Every table's and index's CREATE statement, as SQLite keeps it."""
    with contextlib.closing(sqlite3.connect(sa.make_url(url).database or "")) as connection:
        query = "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL"
        return dict(connection.execute(query).fetchall())


def test_the_migrations_have_one_head() -> None:
    # two heads: two branches each added a migration; `alembic merge` them
    assert len(HEAD) == 1, HEAD


def test_an_empty_database_is_created_at_the_head_with_the_stores_tables(url: str) -> None:
    for metadata in STORES:
        state_engine(url, metadata).dispose()
    assert revision(url) == HEAD
    engine = sa.create_engine(url)
    inspector = sa.inspect(engine)
    for metadata in STORES:
        for table in metadata.tables.values():
            columns = inspector.get_columns(table.name)
            assert [c["name"] for c in columns] == [c.name for c in table.columns], table.name
            nullable = {c["name"]: c["nullable"] for c in columns}
            assert nullable == {c.name: c.nullable for c in table.columns}, table.name
            key = inspector.get_pk_constraint(table.name)["constrained_columns"]
            assert key == [c.name for c in table.primary_key.columns], table.name
            indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes(table.name)}
            assert indexes == {i.name: [c.name for c in i.columns] for i in table.indexes}
    with engine.connect() as conn:  # and nothing else differs (types, defaults, tables)
        assert compare_metadata(MigrationContext.configure(conn), state_metadata()) == []
    engine.dispose()


def test_a_database_of_the_release_before_keeps_every_row(release_url: str) -> None:
    made_by_release = schema(release_url)
    registry = SqlRegistryStore(release_url)
    traffic = SqlTrafficStore(release_url)
    monitor = SqlMonitorStore(release_url)
    assert revision(release_url) == HEAD
    assert row_counts(release_url) == RELEASE_ROWS
    after = schema(release_url)
    assert {k: v for k, v in after.items() if k in made_by_release} == made_by_release
    added = set(after) - set(made_by_release) - {"alembic_version"}
    assert added == ADDED_SINCE_RELEASE  # by the migrations after the baseline

    state = registry.load()  # read back by today's stores
    assert state.models["churn"].description == "Churn — 30 days"
    assert state.models["churn"].policy is not None
    assert state.versions["churn"][1].stage is ModelStage.PRODUCTION
    assert state.versions["churn"][2].tags["note"] == 'quoted "value" and it\'s fine'
    assert [a.approver for a in state.approvals["churn"]] == ["carol", "dave"]
    assert verify(registry.events("churn")).valid and verify(registry.events("fraud")).valid
    assert registry.events("churn")[3].payload == {"note": "é", "semver": "1.1.0"}
    loaded = traffic.load()
    assert loaded.tables["churn"].revision == 3 and loaded.rollouts["churn"].step_index == 1
    assert loaded.p_values == {("churn", "exp-3", "v2"): 0.0371}
    ref = traffic.ref("req-2")
    assert ref is not None and ref.predictions == (0.25, "it's")
    assert traffic.feedback_value("req-9") == (True, None) and traffic.pending_count() == 1
    assert monitor.policies()["churn"].window_s == 1800.0
    alerts = monitor.alerts("churn", None, 0, 10)
    assert [(a.id, a.state) for a in alerts] == [
        ("al-1", AlertState.OPEN),
        ("al-2", AlertState.RESOLVED),
    ]
    assert monitor.retrains("churn") == [("raysubmit_abc123", "al-1", 1793613601.123456)]

    approval = Approval(2, "art-churn-2", "erin", state.approvals["churn"][0].at, "")
    registry.write(RegistryWrite(approvals=(("churn", approval),)))  # a new id follows
    assert len(registry.load().approvals["churn"]) == 3


def test_a_release_database_missing_a_stores_tables_is_completed(release_url: str) -> None:
    # the release made each store's tables on first use: here the monitor never started
    engine = sa.create_engine(release_url)
    with engine.begin() as conn:
        for table in policies_table.metadata.tables:
            conn.execute(sa.text(f"DROP TABLE {table}"))
    engine.dispose()
    SqlRegistryStore(release_url)
    assert revision(release_url) == HEAD
    counts = row_counts(release_url)
    monitoring = {name for name in RELEASE_ROWS if name.startswith("monitoring_")}
    assert {k: v for k, v in counts.items() if k not in monitoring} == {
        k: v for k, v in RELEASE_ROWS.items() if k not in monitoring
    }
    assert {counts[name] for name in monitoring} == {0}
    assert SqlMonitorStore(release_url).policies() == {}


def test_upgrading_a_database_at_the_head_does_nothing(url: str) -> None:
    engine = state_engine(url, models_table.metadata)
    before = schema(url)
    assert upgrade_state_database(engine) is False
    SqlTrafficStore(url)
    assert schema(url) == before and revision(url) == HEAD
    engine.dispose()


@pytest.mark.parametrize("made_by", ["nothing", "release"])
def test_concurrent_start_ups_all_succeed(
    made_by: str, url: str, request: pytest.FixtureRequest
) -> None:
    if made_by == "release":
        url = request.getfixturevalue("release_url")
    starting = threading.Barrier(6)
    errors: list[BaseException] = []

    def start(open_store: Callable[[str], Any]) -> None:
        starting.wait()
        try:
            open_store(url)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=start, args=(OPEN_STORE[i % 3],)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert revision(url) == HEAD
    expected = RELEASE_ROWS if made_by == "release" else dict.fromkeys(RELEASE_ROWS, 0)
    assert row_counts(url) == expected


def test_a_database_migrated_by_a_newer_release_is_refused(url: str) -> None:
    state_engine(url, models_table.metadata).dispose()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(StateSchemaError) as refused:
        SqlRegistryStore(url)
    assert "0099" in str(refused.value) and HEAD[0] in str(refused.value)


def test_a_table_that_no_migration_creates_is_refused(url: str) -> None:
    metadata = sa.MetaData()
    sa.Table("registry_labels", metadata, sa.Column("id", sa.Integer, primary_key=True))
    with pytest.raises(StateSchemaError, match="registry_labels"):
        state_engine(url, metadata)
