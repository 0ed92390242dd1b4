"""The service database (SQLite file by default, PostgreSQL by URL) that the actors'
stores share: one engine per store, its tables created on first use."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa


def state_engine(url: str, metadata: sa.MetaData) -> sa.Engine:
    """An engine on `url` with `metadata`'s tables created (a SQLite file's directory too)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, future=True)
    metadata.create_all(engine)
    return engine
