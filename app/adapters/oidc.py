"""JWT bearer tokens of an OpenID Connect issuer, verified with PyJWT against the issuer's
JWKS (fetched over HTTP, cached, re-fetched for a key id it does not know).

A token is accepted when its signature verifies with one of the issuer's keys under an
allowed algorithm, and `iss`, `aud` and `exp` (required) hold, with `nbf`/`iat` checked
when present, within the configured leeway. Its roles come from a claim, mapped by the
settings; a token granting no known role is refused (401), like an unknown token.
"""

from __future__ import annotations

import logging
from typing import Any

import jwt

from app.core.access import Principal, Role
from app.errors import ErrorCode, Unauthenticated, Unavailable
from app.settings import OidcSettings

log = logging.getLogger(__name__)


class OidcVerifier:
    """`verifier(token)`: the principal of a valid JWT, else `Unauthenticated` saying why
    (`Unavailable` when the issuer's keys cannot be fetched)."""

    def __init__(self, settings: OidcSettings) -> None:
        self._settings = settings
        self._keys = jwt.PyJWKClient(
            settings.jwks_url,
            cache_keys=True,
            lifespan=max(int(settings.jwks_cache_s), 1),
            timeout=int(max(settings.jwks_timeout_s, 1)),
        )

    def __call__(self, token: str) -> Principal:
        config = self._settings
        try:
            key = self._keys.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(config.algorithms),
                audience=config.audience,
                issuer=config.issuer,
                leeway=config.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWKClientConnectionError as error:
            log.warning("OIDC: the issuer's keys could not be fetched: %s", error)
            raise Unavailable(
                ErrorCode.BACKEND_UNAVAILABLE,
                "The identity provider's signing keys could not be fetched; retry shortly.",
            ) from error
        except jwt.ExpiredSignatureError as error:
            raise _refused("it has expired") from error
        except jwt.InvalidIssuerError as error:
            raise _refused("it is not from the configured issuer") from error
        except jwt.InvalidAudienceError as error:
            raise _refused("it is not for this service (audience)") from error
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as error:
            raise _refused(f"it is not valid ({type(error).__name__})") from error
        roles = self._roles(claims)
        if not roles:
            raise _refused(f"its claim '{config.roles_claim}' grants no role of the service")
        name = claims.get(config.name_claim)
        return Principal(f"oidc:{name or claims.get('sub', '?')}", frozenset(roles))

    def _roles(self, claims: dict[str, Any]) -> set[Role]:
        value: Any = claims
        for part in self._settings.roles_claim.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        names = value.split() if isinstance(value, str) else value
        if not isinstance(names, list):
            return set()
        known = {role.value: role for role in Role}
        mapped = self._settings.role_map
        roles = set()
        for item in names:
            if not isinstance(item, str):
                continue
            role = mapped.get(item) or known.get(item)
            if role is not None:
                roles.add(role)
        return roles


def _refused(why: str) -> Unauthenticated:
    return Unauthenticated(
        ErrorCode.UNAUTHENTICATED, f"The bearer token (a JWT) is refused: {why}."
    )
