"""The tokens made through the API, in the service database (`api_tokens`)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from app.adapters.state_database import state_engine
from app.core.access import Role
from app.core.api_tokens import ApiToken, TokenSource

_metadata = sa.MetaData()

tokens_table = sa.Table(
    "api_tokens",
    _metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("roles", sa.String(128), nullable=False),  # comma-separated
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("last_used_at", sa.Float, nullable=True),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Column("revoked_by", sa.String(128), nullable=True),
    sa.Column("source", sa.String(16), nullable=False),
)


class SqlTokenStore:
    """`TokenStore` over SQLAlchemy (SQLite by default, PostgreSQL by URL)."""

    def __init__(self, url: str) -> None:
        self._engine = state_engine(url, _metadata)

    def add(self, token: ApiToken) -> None:
        with self._engine.begin() as conn:
            conn.execute(sa.insert(tokens_table).values(**_row(token)))

    def find(self, sha256: str) -> ApiToken | None:
        return self._one(tokens_table.c.sha256 == sha256)

    def get(self, token_id: str) -> ApiToken | None:
        return self._one(tokens_table.c.id == token_id)

    def page(self, offset: int, limit: int, *, include_revoked: bool) -> list[ApiToken]:
        query = sa.select(tokens_table)
        if not include_revoked:
            query = query.where(tokens_table.c.revoked_at.is_(None))
        query = query.order_by(tokens_table.c.created_at.desc(), tokens_table.c.id)
        with self._engine.connect() as conn:
            rows = conn.execute(query.offset(offset).limit(limit)).all()
        return [_token(row) for row in rows]

    def revoke(self, token_id: str, at: float, by: str) -> ApiToken | None:
        with self._engine.begin() as conn:
            conn.execute(
                sa.update(tokens_table)
                .where(tokens_table.c.id == token_id, tokens_table.c.revoked_at.is_(None))
                .values(revoked_at=at, revoked_by=by)
            )
            row = conn.execute(sa.select(tokens_table).where(tokens_table.c.id == token_id))
            found = row.first()
        return None if found is None else _token(found)

    def mark_used(self, token_id: str, at: float) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                sa.update(tokens_table).where(tokens_table.c.id == token_id).values(last_used_at=at)
            )

    def _one(self, condition: Any) -> ApiToken | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(tokens_table).where(condition)).first()
        return None if row is None else _token(row)


def _row(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "roles": ",".join(token.roles),
        "sha256": token.sha256,
        "created_at": token.created_at,
        "created_by": token.created_by,
        "expires_at": token.expires_at,
        "last_used_at": token.last_used_at,
        "revoked_at": token.revoked_at,
        "revoked_by": token.revoked_by,
        "source": token.source.value,
    }


def _token(row: Any) -> ApiToken:
    return ApiToken(
        id=row.id,
        name=row.name,
        roles=tuple(Role(r) for r in row.roles.split(",") if r),
        sha256=row.sha256,
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
        source=TokenSource(row.source),
    )
