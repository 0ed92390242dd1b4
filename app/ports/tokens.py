"""Where the tokens made through the API are kept (the service database)."""

from __future__ import annotations

from typing import Protocol

from app.core.api_tokens import ApiToken


class TokenStore(Protocol):
    """Stored tokens, by id and by the SHA-256 of their secret. Blocking calls: the use
    case runs them off the event loop."""

    def add(self, token: ApiToken) -> None:
        """Store a new token (its id and digest are new)."""
        ...

    def find(self, sha256: str) -> ApiToken | None:
        """The token whose secret has this digest, revoked or not."""
        ...

    def get(self, token_id: str) -> ApiToken | None:
        """The token with this id, revoked or not."""
        ...

    def page(self, offset: int, limit: int, *, include_revoked: bool) -> list[ApiToken]:
        """Tokens, newest first."""
        ...

    def revoke(self, token_id: str, at: float, by: str) -> ApiToken | None:
        """Mark the token revoked (once: a second call keeps the first time); None if
        there is no such token."""
        ...

    def mark_used(self, token_id: str, at: float) -> None:
        """Record that the token was used at `at`."""
        ...
