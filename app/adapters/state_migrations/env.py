"""Alembic's environment for the service database.

The service runs the commands on its own connection (`config.attributes["connection"]`,
in a transaction it holds with its lock: see `state_database`); the `alembic` command
line names a database with `-x url=...` instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from app.adapters.state_migrations import state_metadata


def _run(connection: sa.Connection) -> None:
    # batch operations: SQLite alters a table by copying it (autogenerate writes them so)
    context.configure(connection=connection, target_metadata=state_metadata(), render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    url = url or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("Name the service database: alembic -x url=sqlite:///... <command>")
    return url


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    elif context.is_offline_mode():  # --sql: the statements, printed
        context.configure(url=_url(), target_metadata=state_metadata(), literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        engine = sa.create_engine(_url(), poolclass=sa.pool.NullPool)
        with engine.connect() as connection:
            _run(connection)


_main()
