"""The service database (SQLite file by default, PostgreSQL by URL) that the actors'
stores share: one engine per store, the schema brought to this code's migration head
(Alembic, `app/adapters/state_migrations`) before the first use.

The three actors open their stores at the same moment on start-up, so the check and the
upgrade run under one lock per database: a PostgreSQL advisory lock (a transaction-level
one: a crashed migration cannot leave it held) or, for a SQLite file, an exclusive
`flock` on a lock file next to it. Other databases (MySQL) are migrated unlocked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from app.adapters.local_files import exclusive
from app.errors import ErrorCode, Unavailable

MIGRATIONS_DIR = Path(__file__).with_name("state_migrations")
BASELINE = "0001"  # the schema of the release before migrations (0231c5a)
# pg_advisory_xact_lock's key: any fixed number, shared by every process of the service.
_PG_LOCK_KEY = 0x6D6C5F7374617465  # "ml_state"


class StateSchemaError(RuntimeError):
    """The service database's schema does not fit this code (a newer release migrated
    it, or a table of the code has no migration)."""


def state_engine(url: str, metadata: sa.MetaData) -> sa.Engine:
    """An engine on `url`, its database upgraded to the migrations' head (a SQLite file's
    directory created), where `metadata`'s tables are checked to exist."""
    database = _sqlite_file(sa.make_url(url))
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    engine_url = sa.make_url(url)
    engine = sa.create_engine(
        engine_url,
        future=True,
        pool_pre_ping=True,  # a restarted server's dead pooled connections are replaced
        connect_args=_connect_args(engine_url),
    )
    if engine_url.get_backend_name() != "sqlite":
        sa.event.listen(engine, "handle_error", _outage_as_unavailable)
    upgrade_state_database(engine)
    _check_tables(engine, metadata)
    return engine


CONNECT_TIMEOUT_S = 5  # a server that does not answer is an outage after this long


STALLED_S = 15  # a server that stops answering mid-request is an outage after this long


def _connect_args(url: sa.URL) -> dict[str, object]:
    """libpq's timeouts: connecting, and a connection whose server stopped answering (TCP
    keepalives and unacknowledged data), so that a hung server is a 503, not a hang."""
    if url.get_backend_name() == "postgresql" and url.get_driver_name() == "psycopg2":
        return {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": STALLED_S * 1000,
        }
    return {}


def _outage_as_unavailable(context: sa.engine.ExceptionContext) -> None:
    """A database server that cannot be reached (refused, dropped, timed out) is the
    service database's outage: 503 `state_store_unavailable`, retried by the client; the
    transaction it interrupted was rolled back, so nothing is half written."""
    if context.is_disconnect or isinstance(context.sqlalchemy_exception, sa.exc.OperationalError):
        raise Unavailable(
            ErrorCode.STATE_STORE_UNAVAILABLE,
            "The service database is unavailable; retry shortly.",
        ) from context.original_exception


def state_ping(url: str) -> Callable[[], None]:
    """A readiness check of the service database on its own small engine (one pooled
    connection, checked before use): no migration, no table touched."""
    engine_url = sa.make_url(url)
    engine = sa.create_engine(
        engine_url, pool_size=1, pool_pre_ping=True, connect_args=_connect_args(engine_url)
    )

    def ping() -> None:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    return ping


def upgrade_state_database(engine: sa.Engine) -> bool:
    """Bring the database to the head revision; whether anything had to be done.

    A database made before migrations (the tables, no `alembic_version`) is stamped with
    the baseline first, its rows kept; an empty one is created by the migrations.

    Raises:
        StateSchemaError: the database is at a revision this code does not know.
    """
    with _file_lock(_sqlite_file(engine.url)), engine.connect() as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
        return _upgrade(conn)


def migration_config(connection: sa.Connection | None = None) -> Config:
    """Alembic's configuration for the service database, in code (no alembic.ini): the
    commands of `alembic.command` take it; with `connection`, they run on it."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(conn: sa.Connection) -> bool:
    script = _scripts()
    heads = tuple(script.get_heads())
    current = MigrationContext.configure(conn).get_current_heads()
    _refuse_unknown(script, current, heads)
    if set(current) == set(heads):
        return False
    config = migration_config(conn)
    if not current and _holds_every_release_table(conn, script):
        command.stamp(config, BASELINE)  # made by the release before migrations
    command.upgrade(config, "head")
    reached = MigrationContext.configure(conn).get_current_heads()
    if set(reached) != set(heads):
        raise StateSchemaError(
            f"The service database is at schema revision {_names(reached)} after upgrading,"
            f" not at this code's head {_names(heads)}."
        )
    return True


def _refuse_unknown(
    script: ScriptDirectory, current: tuple[str, ...], heads: tuple[str, ...]
) -> None:
    known = {s.revision for s in script.walk_revisions()}
    unknown = [revision for revision in current if revision not in known]
    if unknown:
        raise StateSchemaError(
            f"The service database is at schema revision {_names(tuple(unknown))}, which this"
            f" code does not know (its newest is {_names(heads)}): a newer release migrated"
            " it. Run that release or a later one, or restore a backup taken before it."
        )


def _holds_every_release_table(conn: sa.Connection, script: ScriptDirectory) -> bool:
    """Whether the release before migrations made every table here. It made each store's
    tables on first use, so a database may hold only some: the baseline, which creates
    only missing tables, then completes it instead of a stamp."""
    baseline = script.get_revision(BASELINE)
    assert baseline is not None
    release_tables: tuple[str, ...] = baseline.module.RELEASE_TABLES
    return set(release_tables) <= set(sa.inspect(conn).get_table_names())


def _check_tables(engine: sa.Engine, metadata: sa.MetaData) -> None:
    with engine.connect() as conn:
        existing = set(sa.inspect(conn).get_table_names())
    missing = sorted(set(metadata.tables) - existing)
    if missing:
        raise StateSchemaError(
            f"Tables {', '.join(missing)} are in the code but no migration creates them:"
            " add a migration (see app/adapters/state_migrations)."
        )


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(migration_config())


def _names(revisions: tuple[str, ...]) -> str:
    return ", ".join(revisions) if revisions else "none"


def _sqlite_file(url: sa.URL) -> Path | None:
    """The file of a SQLite URL (None: another database, or SQLite in memory)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


@contextmanager
def _file_lock(database: Path | None) -> Iterator[None]:
    """An exclusive lock on `<database>.migrate.lock` (nothing without a file). `flock`
    locks belong to the open file, so threads of one process exclude each other too."""
    if database is None:
        yield
        return
    with exclusive(database.with_name(database.name + ".migrate.lock")):
        yield
