"""Access control: roles, principals, bearer tokens kept as hashes, and route policies.

Tokens are 256-bit random strings; the service only ever holds their SHA-256. A salted
slow hash (bcrypt, argon2) protects low-entropy passwords; for random tokens of this
size a plain SHA-256 is the usual choice (GitHub and PyPI do the same) and keeps every
request's check at microseconds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from app.errors import ErrorCode, Forbidden, Unauthenticated

TOKEN_PREFIX = "mls_"


class Role(StrEnum):
    """Roles a bearer token can carry."""

    VIEWER = "viewer"
    ENGINEER = "engineer"
    APPROVER = "approver"
    ADMIN = "admin"


# What each role grants: engineers and approvers can read; admin can do everything.
_GRANTS: dict[Role, frozenset[Role]] = {
    Role.VIEWER: frozenset({Role.VIEWER}),
    Role.ENGINEER: frozenset({Role.VIEWER, Role.ENGINEER}),
    Role.APPROVER: frozenset({Role.VIEWER, Role.APPROVER}),
    Role.ADMIN: frozenset(Role),
}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the token's name and the roles it grants."""

    name: str
    roles: frozenset[Role]

    def can(self, role: Role) -> bool:
        """Whether any of the caller's roles grants `role`."""
        return any(role in _GRANTS[held] for held in self.roles)


def mint_token() -> str:
    """A new random bearer token (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """The hex SHA-256 under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenBook:
    """The known tokens: the configured ones by digest; the stored ones (made through the
    API), looked up by digest on each use so that a revocation holds at once; and, when an
    identity provider is configured, the verifier of its JWTs. The lookup and the verifier
    raise `Unauthenticated` naming why a token is refused (revoked, expired, bad JWT)."""

    by_digest: dict[str, Principal]
    jwt_verifier: Callable[[str], Principal] | None = None
    stored: Callable[[str], Principal | None] | None = None

    @classmethod
    def of(
        cls,
        entries: Iterable[tuple[str, Iterable[Role], str]],
        jwt_verifier: Callable[[str], Principal] | None = None,
        stored: Callable[[str], Principal | None] | None = None,
    ) -> TokenBook:
        """Build from `(name, roles, sha256)` triples, a JWT verifier and the lookup of
        stored tokens by digest."""
        known = {digest: Principal(name, frozenset(roles)) for name, roles, digest in entries}
        return cls(known, jwt_verifier, stored)

    def verifies_jwt(self, token: str) -> bool:
        """Whether `token` goes to the JWT verifier (which may fetch the issuer's keys)."""
        return self.jwt_verifier is not None and looks_like_jwt(token)

    def blocks(self, token: str) -> bool:
        """Whether checking `token` does I/O (a database lookup or the issuer's keys)."""
        if token_digest(token) in self.by_digest:
            return False
        return self.verifies_jwt(token) or (
            self.stored is not None and token.startswith(TOKEN_PREFIX)
        )

    def principal_for(self, token: str) -> Principal | None:
        """The principal holding `token`, or None if the token is unknown."""
        digest = token_digest(token)
        known = self.by_digest.get(digest)
        if known is not None:
            return known
        if self.stored is not None and token.startswith(TOKEN_PREFIX):
            return self.stored(digest)
        if self.verifies_jwt(token):
            assert self.jwt_verifier is not None
            return self.jwt_verifier(token)
        return None


def looks_like_jwt(token: str) -> bool:
    """A compact JWS: three base64url parts (a service token has no dots)."""
    parts = token.split(".")
    return len(parts) == 3 and all(parts[:2]) and not token.startswith(TOKEN_PREFIX)


def credential_from_header(authorization: str | None) -> str | None:
    """The token in an `Authorization` header: `Bearer <token>`, or HTTP Basic with the
    token as password (what browsers and MLflow's username/password settings send)."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def authenticate(book: TokenBook, authorization: str | None) -> Principal:
    """The caller behind an `Authorization` header.

    Raises:
        Unauthenticated: no credential, or one that matches no known token.
    """
    token = credential_from_header(authorization)
    if token is None:
        raise Unauthenticated(
            ErrorCode.UNAUTHENTICATED, "This endpoint needs a bearer token (Authorization header)."
        )
    principal = book.principal_for(token)
    if principal is None:
        raise Unauthenticated(ErrorCode.UNAUTHENTICATED, "The bearer token is not recognised.")
    return principal


def authorize(principal: Principal, role: Role) -> None:
    """Check that `principal` holds `role`.

    Raises:
        Forbidden: the caller's roles do not grant `role`.
    """
    if not principal.can(role):
        raise Forbidden(
            ErrorCode.FORBIDDEN,
            f"This action needs the '{role}' role.",
            required_role=role.value,
            principal=principal.name,
        )


def role_for_method(method: str) -> Role:
    """Default policy of the API: reads need `viewer`, every other method `engineer`."""
    return Role.VIEWER if method.upper() in {"GET", "HEAD", "OPTIONS"} else Role.ENGINEER


# MLflow's REST API reads through POST on these endpoints (last path segment).
_MLFLOW_READ_POSTS = frozenset(
    {
        "search",
        "search-datasets",
        "get-latest-versions",
        "batchGetInfos",
        "calculate-filter-correlation",
        "graphql",
    }
)
_MLFLOW_PUBLIC_PATHS = frozenset({"", "/", "/health", "/version", "/favicon.ico"})


def mlflow_route_role(method: str, path: str) -> Role | None:
    """The role MLflow's server needs for `method path` (path below the MLflow prefix).

    The UI shell (index page and static bundle) and the health probe are public: they hold
    no data. Reading data needs `viewer`, changing it `engineer`. None means public.
    """
    if path in _MLFLOW_PUBLIC_PATHS or path.startswith("/static-files/"):
        return None
    if method.upper() == "POST" and path.rstrip("/").rsplit("/", 1)[-1] in _MLFLOW_READ_POSTS:
        return Role.VIEWER
    return role_for_method(method)
