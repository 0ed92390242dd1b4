"""Tokens as a product feature: admins create them (a role, a name, an expiry), list and
revoke them through the API; every replica checks a token against the service database
on each request, so a revocation holds at once everywhere.

Only the SHA-256 of a secret is stored; `create` returns the secret once. `last_used_at`
is written at most once a minute per token, so a busy token does not write on every
request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from app.core.access import Principal, Role, mint_token, token_digest
from app.core.api_tokens import ApiToken, TokenSource, TokenState, new_token_id
from app.errors import ErrorCode, NotFound, Unauthenticated
from app.ports.tokens import TokenStore

log = logging.getLogger(__name__)

TOUCH_EVERY_S = 60.0


class ApiTokens:
    """Create, list and revoke stored tokens; authenticate their holders."""

    def __init__(self, store: TokenStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    # -- the request path (blocking: called off the event loop) -------------------------

    def principal_for(self, sha256: str) -> Principal | None:
        """The holder of the stored token with this digest; None if there is none.

        Raises:
            Unauthenticated: the token was revoked or has expired.
        """
        token = self._store.find(sha256)
        if token is None:
            return None
        now = self._clock()
        state = token.state(now)
        if state is TokenState.REVOKED:
            raise Unauthenticated(
                ErrorCode.UNAUTHENTICATED,
                f"The bearer token was revoked ({_iso(token.revoked_at)}).",
            )
        if state is TokenState.EXPIRED:
            raise Unauthenticated(
                ErrorCode.UNAUTHENTICATED, f"The bearer token expired at {_iso(token.expires_at)}."
            )
        if token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY_S:
            try:
                self._store.mark_used(token.id, now)
            except Exception:  # noqa: BLE001 - a lost `last used` must not refuse a caller
                log.warning("could not record the use of token %s", token.id, exc_info=True)
        return Principal(token.name, frozenset(token.roles))

    # -- administration -----------------------------------------------------------------

    async def create(
        self, name: str, roles: Iterable[Role], expires_at: float | None, by: str
    ) -> tuple[ApiToken, str]:
        """A new token and its secret (shown once; only its digest is kept)."""
        secret = mint_token()
        token = ApiToken(
            id=new_token_id(),
            name=name,
            roles=tuple(sorted(set(roles))),
            sha256=token_digest(secret),
            created_at=self._clock(),
            created_by=by,
            expires_at=expires_at,
        )
        await asyncio.to_thread(self._store.add, token)
        log.info(
            "token %s created for %r (roles %s) by %s",
            token.id,
            name,
            ",".join(token.roles),
            by,
        )
        return token, secret

    async def page(self, offset: int, limit: int, *, include_revoked: bool) -> list[ApiToken]:
        """Tokens, newest first."""
        return await asyncio.to_thread(
            self._store.page, offset, limit, include_revoked=include_revoked
        )

    async def get(self, token_id: str) -> ApiToken:
        """One token.

        Raises:
            NotFound: no token has this id.
        """
        token = await asyncio.to_thread(self._store.get, token_id)
        if token is None:
            raise _not_found(token_id)
        return token

    async def revoke(self, token_id: str, by: str) -> ApiToken:
        """Revoke a token (again: no change); effective on every replica's next request.

        Raises:
            NotFound: no token has this id.
        """
        token = await asyncio.to_thread(self._store.revoke, token_id, self._clock(), by)
        if token is None:
            raise _not_found(token_id)
        log.info("token %s (%r) revoked by %s", token.id, token.name, token.revoked_by)
        return token

    def now(self) -> float:
        """The clock the expiries are read against."""
        return self._clock()


def bootstrap_token(sha256: str, at: float) -> ApiToken:
    """The stored record of the start-up's bootstrap admin token with this digest."""
    return ApiToken(
        id=f"tok_bootstrap_{sha256[:8]}",
        name="bootstrap-admin",
        roles=(Role.ADMIN,),
        sha256=sha256,
        created_at=at,
        created_by="start-up",
        source=TokenSource.BOOTSTRAP,
    )


def _iso(at: float | None) -> str:
    return datetime.fromtimestamp(at or 0, UTC).isoformat(timespec="seconds")


def _not_found(token_id: str) -> NotFound:
    return NotFound(ErrorCode.TOKEN_NOT_FOUND, f"No token has the id {token_id!r}.")
