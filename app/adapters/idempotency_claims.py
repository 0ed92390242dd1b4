"""Idempotency keys claimed in the service database (`idempotency_claims`): the one point
where retries racing on different replicas meet. The first insert of a (scope, key) wins
and does the work; the others wait for its result and replay it."""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from app.adapters.state_database import state_engine
from app.errors import ErrorCode, Unavailable

_metadata = sa.MetaData()

claims_table = sa.Table(
    "idempotency_claims",
    _metadata,
    sa.Column("scope", sa.String(200), primary_key=True),
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("resource", sa.String(200), nullable=True),  # None while the work is in flight
    sa.Column("claimed_at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class Claim:
    """Someone else's claim: the request it was made for and, once done, its result."""

    digest: str
    resource: str | None


class SqlIdempotencyClaims:
    """Claims over SQLAlchemy (SQLite by default, PostgreSQL by URL).

    Args:
        url: the service database.
        wait_s: how long a retry waits for the winner's result before a 503.
    """

    def __init__(self, url: str, wait_s: float = 60.0) -> None:
        self._engine = state_engine(url, _metadata)
        self._wait_s = wait_s

    def claim(self, scope: str, key: str, digest: str) -> Claim | None:
        """Claim `key` in `scope` for the request `digest`: None when this caller won and
        must do the work (then `complete` or `release`), else the existing claim."""
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    sa.insert(claims_table).values(
                        scope=scope, key=key, digest=digest, claimed_at=time.time()
                    )
                )
            return None
        except sa.exc.IntegrityError:
            found = self._get(scope, key)
            return found if found is not None else self.claim(scope, key, digest)

    def result(self, scope: str, key: str) -> str:
        """The winner's result, waited for while its work is in flight.

        Raises:
            Unavailable: no result within the wait (the winner is stuck or gave up).
        """
        deadline = time.monotonic() + self._wait_s
        delay = 0.02
        while True:
            found = self._get(scope, key)
            if found is not None and found.resource is not None:
                return found.resource
            if time.monotonic() > deadline:
                raise Unavailable(
                    ErrorCode.BACKEND_UNAVAILABLE,
                    "The first request with this Idempotency-Key is still being processed; "
                    "retry shortly.",
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def complete(self, scope: str, key: str, resource: str) -> None:
        """Record the winner's result."""
        with self._engine.begin() as conn:
            conn.execute(
                sa.update(claims_table)
                .where(claims_table.c.scope == scope, claims_table.c.key == key)
                .values(resource=resource)
            )

    def release(self, scope: str, key: str) -> None:
        """Give the claim up (the work failed): the next retry claims it afresh."""
        with self._engine.begin() as conn:
            conn.execute(
                sa.delete(claims_table).where(
                    claims_table.c.scope == scope, claims_table.c.key == key
                )
            )

    def _get(self, scope: str, key: str) -> Claim | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(claims_table.c.digest, claims_table.c.resource).where(
                    claims_table.c.scope == scope, claims_table.c.key == key
                )
            ).first()
        return None if row is None else Claim(row.digest, row.resource)
