"""Tokens made through the API (`/auth/tokens`): a role, a name, an expiry; the service
keeps only the SHA-256 of the secret, which the caller sees once.

The start-up's bootstrap admin token is one of them too (`source` "bootstrap"), so it can
be listed and revoked like any other.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from enum import StrEnum

from app.core.access import Role

ID_PREFIX = "tok_"


class TokenSource(StrEnum):
    """Where a stored token came from."""

    API = "api"  # created by an admin through the API or the CLI
    BOOTSTRAP = "bootstrap"  # generated at start-up into the data directory


class TokenState(StrEnum):
    """Whether a token is accepted now."""

    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class ApiToken:
    """A stored token: who holds it, what it grants and its lifetime (epoch seconds)."""

    id: str
    name: str
    roles: tuple[Role, ...]
    sha256: str
    created_at: float
    created_by: str
    expires_at: float | None = None
    last_used_at: float | None = None
    revoked_at: float | None = None
    revoked_by: str | None = None
    source: TokenSource = TokenSource.API

    def state(self, now: float) -> TokenState:
        """Revoked, expired (at or after `expires_at`) or active at `now`."""
        if self.revoked_at is not None:
            return TokenState.REVOKED
        if self.expires_at is not None and now >= self.expires_at:
            return TokenState.EXPIRED
        return TokenState.ACTIVE

    def revoked(self, at: float, by: str) -> ApiToken:
        """This token revoked at `at` by `by` (an already revoked one stays as it was)."""
        if self.revoked_at is not None:
            return self
        return replace(self, revoked_at=at, revoked_by=by)


def new_token_id() -> str:
    """A new token id: public, short, random (not derived from the secret)."""
    return ID_PREFIX + secrets.token_hex(8)
