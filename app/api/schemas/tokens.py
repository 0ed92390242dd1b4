"""Wire models of the tokens made through the API."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from app.core.access import Role
from app.core.api_tokens import ApiToken, TokenSource, TokenState

DEFAULT_LIFETIME_DAYS = 90


class TokenCreate(BaseModel):
    """A token to create: who holds it, its roles and how long it lasts."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {"name": "ci-pipeline", "roles": ["engineer"], "expires_in_days": 30}
        },
    )

    name: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._@+\-]*$",
        description="Who holds it; recorded as the actor in audit events.",
    )
    roles: list[Role] = Field(min_length=1, max_length=4, description="Roles it grants.")
    expires_in_days: int | None = Field(
        default=DEFAULT_LIFETIME_DAYS,
        ge=1,
        le=3650,
        description="Lifetime in days from now; null: it never expires.",
    )


class TokenPublic(BaseModel):
    """A stored token (never its secret)."""

    id: str = Field(description="Its id; revoke it with `DELETE /auth/tokens/{id}`.")
    name: str
    roles: list[Role]
    source: TokenSource = Field(
        description="`api`: created by an admin; `bootstrap`: the start-up's admin token."
    )
    state: TokenState = Field(description="Whether it is accepted now.")
    created_at: datetime
    created_by: str
    expires_at: datetime | None = Field(description="null: it never expires.")
    last_used_at: datetime | None = Field(description="To the minute; null: never used.")
    revoked_at: datetime | None
    revoked_by: str | None

    @classmethod
    def of(cls, token: ApiToken, now: float) -> TokenPublic:
        return cls(
            id=token.id,
            name=token.name,
            roles=list(token.roles),
            source=token.source,
            state=token.state(now),
            created_at=_at(token.created_at),
            created_by=token.created_by,
            expires_at=_at(token.expires_at),
            last_used_at=_at(token.last_used_at),
            revoked_at=_at(token.revoked_at),
            revoked_by=token.revoked_by,
        )


class TokenCreated(TokenPublic):
    """A new token, with its secret: shown this once, never again."""

    token: str = Field(description="The secret: send it as `Authorization: Bearer <token>`.")


class Caller(BaseModel):
    """Who the service takes the caller to be."""

    name: str
    roles: list[Role]


def _at(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)
