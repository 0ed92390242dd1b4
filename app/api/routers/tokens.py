"""`/auth`: who am I, and the admins' tokens (create, list, revoke)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.api.deps import CurrentPrincipal, PageParams, TokensDep
from app.api.problems import problem_responses
from app.api.schemas.common import Page
from app.api.schemas.tokens import Caller, TokenCreate, TokenCreated, TokenPublic
from app.api.security import GuardedRoute, requires
from app.core.access import Role
from app.core.paging import query_fingerprint, seal, unseal_offset

router = APIRouter(tags=["auth"], route_class=GuardedRoute)

TokenId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^tok_[A-Za-z0-9_]+$")]
_ADMIN = requires(Role.ADMIN)


@router.get("/auth/me", response_model=Caller)
async def who_am_i(principal: CurrentPrincipal) -> Caller:
    """The caller's name and roles, as the service sees its token."""
    return Caller(name=principal.name, roles=sorted(principal.roles))


@router.post(
    "/auth/tokens",
    status_code=201,
    response_model=TokenCreated,
    responses=problem_responses(422, 503),
    openapi_extra=_ADMIN,
)
async def create_token(
    body: TokenCreate, tokens: TokensDep, principal: CurrentPrincipal
) -> TokenCreated:
    """Create a token with a role, a name and an expiry; its secret is in this answer only
    (the service keeps its SHA-256). Not idempotent: each call makes a new secret."""
    now = tokens.now()
    expires_at = None if body.expires_in_days is None else now + body.expires_in_days * 86400
    token, secret = await tokens.create(body.name, body.roles, expires_at, principal.name)
    return TokenCreated(**TokenPublic.of(token, now).model_dump(), token=secret)


@router.get(
    "/auth/tokens",
    response_model=Page[TokenPublic],
    responses=problem_responses(422, 503),
    openapi_extra=_ADMIN,
)
async def list_tokens(
    tokens: TokensDep,
    page: PageParams,
    include_revoked: Annotated[
        bool, Query(description="Also list revoked tokens (kept for the record).")
    ] = False,
) -> Page[TokenPublic]:
    """Tokens made through the API and the bootstrap admin token, newest first (configured
    tokens live in the settings, OIDC tokens at the issuer)."""
    fingerprint = query_fingerprint(["tokens", include_revoked])
    offset = unseal_offset(page.token, fingerprint)
    found = await tokens.page(offset, page.size + 1, include_revoked=include_revoked)
    now = tokens.now()
    return Page[TokenPublic](
        items=[TokenPublic.of(t, now) for t in found[: page.size]],
        next_page_token=seal(str(offset + page.size), fingerprint)
        if len(found) > page.size
        else None,
    )


@router.get(
    "/auth/tokens/{token_id}",
    response_model=TokenPublic,
    responses=problem_responses(404, 422, 503),
    openapi_extra=_ADMIN,
)
async def get_token(token_id: TokenId, tokens: TokensDep) -> TokenPublic:
    """One token: its roles, lifetime, last use and state."""
    return TokenPublic.of(await tokens.get(token_id), tokens.now())


@router.delete(
    "/auth/tokens/{token_id}",
    response_model=TokenPublic,
    responses=problem_responses(404, 422, 503),
    openapi_extra=_ADMIN,
)
async def revoke_token(
    token_id: TokenId, tokens: TokensDep, principal: CurrentPrincipal
) -> TokenPublic:
    """Revoke a token: every replica refuses it from the next request on (401). Revoking
    it again changes nothing; the record stays, listed with `include_revoked`."""
    return TokenPublic.of(await tokens.revoke(token_id, principal.name), tokens.now())
