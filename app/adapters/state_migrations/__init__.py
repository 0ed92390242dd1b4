"""The service database's schema migrations (Alembic): one history for the tables of the
stores (`registry_store`, `traffic_store`, `monitor_store`, `token_store`), one `alembic_version`.

The service migrates itself: each store's engine (`state_database.state_engine`) brings
the database to the head revision on start-up, under a lock. A database made by the
release before migrations (0231c5a) is stamped with the baseline, `0001`, and kept.

Adding a migration, when a store's table changes:

1. Change the table in the store's module.
2. Have Alembic write the migration against a database at the current head (the
   `[tool.alembic]` section of `pyproject.toml` points the `alembic` command here; run it
   at the repository root; `-x url=` names the database, revision ids are sequential)::

       .venv/bin/alembic -x url=sqlite:////tmp/head.db upgrade head
       .venv/bin/alembic -x url=sqlite:////tmp/head.db revision --autogenerate \\
           --rev-id 0002 -m "add the alerts' severity"

   (without `--autogenerate` you get an empty one to fill in).
3. Read it and write it out in full: a migration is frozen, so it spells every column
   and never imports a store's tables. SQLite changes columns by copying the table:
   keep the `op.batch_alter_table` blocks autogenerate writes. Data migrations go in the
   same file (`op.execute`, `op.get_bind()`).
4. `tests/unit/test_state_migrations.py` checks that the migrated schema matches the
   stores' tables, and that a database of the release before still upgrades with its
   rows (`tests/fixtures/`); on release, add that release's fixture
   (`tests/fixtures/make_release_db.py`).
"""

from __future__ import annotations

import sqlalchemy as sa


def state_metadata() -> sa.MetaData:
    """The tables of the stores as one MetaData: what the migrations' head must
    match (autogenerate compares it with the database)."""
    from app.adapters.idempotency_claims import claims_table
    from app.adapters.monitor_store import policies_table
    from app.adapters.registry_store import models_table
    from app.adapters.token_store import tokens_table
    from app.adapters.traffic_store import tables_table

    combined = sa.MetaData()
    stores = (models_table, tables_table, policies_table, tokens_table, claims_table)
    for store in (table.metadata for table in stores):
        for table in store.tables.values():
            table.to_metadata(combined)
    return combined
