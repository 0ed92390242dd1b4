"""JWT bearer tokens of an OpenID Connect issuer: a real RSA key pair, its JWKS served on
loopback by the test over HTTP, tokens signed with PyJWT, checked by the API's guard
(and the MLflow gateway's) through the service's verifier."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from app.api.factory import create_api
from app.core.access import Role
from app.errors import ErrorCode
from app.services.container import Services
from app.settings import OidcSettings
from deployments.composition import jwt_verifier
from testkit.api import StubTracker
from testkit.auth import Tokens
from testkit.oidc import AUDIENCE, ISSUER, Issuer
from testkit.settings import settings_for

BASE = "/api/v1/ml"


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    issuer = Issuer()
    yield issuer
    issuer.close()


@pytest.fixture
def client(tmp_path: Path, issuer: Issuer) -> TestClient:
    settings = settings_for(tmp_path, Tokens())
    oidc = OidcSettings(
        issuer=ISSUER,
        jwks_url=issuer.url,
        audience=AUDIENCE,
        roles_claim="realm_access.roles",
        role_map={"ml-engineers": Role.ENGINEER, "ml-admins": Role.ADMIN},
        jwks_timeout_s=2,
    )
    app = create_api(
        Services(tracker=StubTracker()),
        api=settings.api,
        tokens=settings.auth.tokens,
        jwt_verifier=jwt_verifier(settings.auth.model_copy(update={"oidc": oidc})),
    )
    return TestClient(app)


def roles(*names: str) -> dict[str, Any]:
    return {"realm_access": {"roles": list(names)}}


def call(client: TestClient, token: str, method: str = "GET", path: str = "/models") -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    return client.request(method, f"{BASE}{path}", headers=headers, json={"name": "x"})


def test_a_valid_jwt_is_the_caller_with_its_mapped_roles(
    client: TestClient, issuer: Issuer
) -> None:
    viewer = issuer.token(**roles("viewer"))  # a role's own name counts
    # authenticated and allowed: the request reaches the (absent) registry
    assert call(client, viewer).json()["code"] == ErrorCode.BACKEND_UNAVAILABLE
    refused = call(client, viewer, "POST", "/experiments")
    assert refused.status_code == 403 and refused.json()["code"] == ErrorCode.FORBIDDEN
    engineer = issuer.token(**roles("ml-engineers", "unrelated-group"))
    # past authentication and the engineer's role: the body ({"name": "x"}) is what fails
    written = call(client, engineer, "POST", "/models")
    assert written.status_code == 422 and written.json()["code"] == ErrorCode.VALIDATION_FAILED
    # the keys were fetched once and cached
    for _ in range(3):
        call(client, engineer)
    assert issuer.fetches == 1


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"exp": int(time.time()) - 3600, **roles("viewer")}, "expired"),
        ({"iss": "https://other.example", **roles("viewer")}, "issuer"),
        ({"aud": "another-service", **roles("viewer")}, "audience"),
        ({"exp": None, **roles("viewer")}, "not valid"),
        ({**roles("nobody")}, "grants no role"),
        ({}, "grants no role"),
    ],
    ids=["expired", "wrong-issuer", "wrong-audience", "no-exp", "unmapped-role", "no-roles"],
)
def test_a_jwt_refused_says_why(
    client: TestClient, issuer: Issuer, claims: dict[str, Any], why: str
) -> None:
    answer = call(client, issuer.token(**claims))
    assert answer.status_code == 401, answer.text
    assert answer.json()["code"] == ErrorCode.UNAUTHENTICATED
    assert why in answer.json()["detail"], answer.json()


def test_a_jwt_signed_by_another_key_or_alg_none_is_refused(
    client: TestClient, issuer: Issuer
) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = issuer.token(key=stranger, **roles("ml-admins"))
    assert call(client, forged).status_code == 401
    unknown_kid = issuer.token(key=stranger, kid="key-2", **roles("ml-admins"))
    assert call(client, unknown_kid).status_code == 401
    header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    payload = jwt.utils.base64url_encode(
        json.dumps(
            {"iss": ISSUER, "aud": AUDIENCE, "exp": time.time() + 60, **roles("viewer")}
        ).encode()
    ).decode()
    assert call(client, f"{header}.{payload}.").status_code == 401


def test_the_issuer_unreachable_is_a_503_and_tokens_still_work(
    client: TestClient, issuer: Issuer, tmp_path: Path
) -> None:
    issuer.down = True
    answer = call(client, issuer.token(**roles("viewer")))
    assert answer.status_code == 503, answer.text
    assert "identity provider" in answer.json()["detail"]
    assert call(client, "mls_not-a-known-token").status_code == 401  # no fetch for these
