import base64

import pytest

from app.core.access import (
    TOKEN_PREFIX,
    Principal,
    Role,
    TokenBook,
    authenticate,
    authorize,
    credential_from_header,
    mint_token,
    mlflow_route_role,
    role_for_method,
    token_digest,
)
from app.errors import ErrorCode, Forbidden, Unauthenticated


def principal(*roles: Role) -> Principal:
    return Principal("someone", frozenset(roles))


@pytest.mark.parametrize(
    ("held", "needed", "allowed"),
    [
        (Role.VIEWER, Role.VIEWER, True),
        (Role.VIEWER, Role.ENGINEER, False),
        (Role.ENGINEER, Role.VIEWER, True),
        (Role.ENGINEER, Role.APPROVER, False),
        (Role.APPROVER, Role.VIEWER, True),
        (Role.APPROVER, Role.ENGINEER, False),
        (Role.ADMIN, Role.APPROVER, True),
        (Role.ADMIN, Role.ENGINEER, True),
    ],
)
def test_role_grants(held: Role, needed: Role, allowed: bool) -> None:
    assert principal(held).can(needed) is allowed


def test_several_roles_combine() -> None:
    assert principal(Role.ENGINEER, Role.APPROVER).can(Role.APPROVER)


def test_minted_tokens_are_unique_and_prefixed() -> None:
    tokens = {mint_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(t.startswith(TOKEN_PREFIX) and len(t) > 40 for t in tokens)


def test_book_holds_digests_only() -> None:
    token = mint_token()
    book = TokenBook.of([("alice", [Role.ENGINEER], token_digest(token))])
    assert token not in repr(book)
    assert book.principal_for(token) == Principal("alice", frozenset({Role.ENGINEER}))
    assert book.principal_for(token + "x") is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("Bearer abc", "abc"),
        ("bearer   abc ", "abc"),
        ("Bearer", None),
        ("Basic " + base64.b64encode(b"me:tok").decode(), "tok"),
        ("Basic " + base64.b64encode(b"tok-without-colon").decode(), None),
        ("Basic !!!not-base64", None),
        ("Token abc", None),
    ],
)
def test_credential_parsing(header: str | None, expected: str | None) -> None:
    assert credential_from_header(header) == expected


def test_authenticate_and_authorize() -> None:
    token = mint_token()
    book = TokenBook.of([("viewer-1", [Role.VIEWER], token_digest(token))])
    with pytest.raises(Unauthenticated) as missing:
        authenticate(book, None)
    assert missing.value.code is ErrorCode.UNAUTHENTICATED
    with pytest.raises(Unauthenticated):
        authenticate(book, "Bearer nope")
    who = authenticate(book, f"Bearer {token}")
    authorize(who, Role.VIEWER)
    with pytest.raises(Forbidden) as denied:
        authorize(who, Role.ENGINEER)
    assert denied.value.code is ErrorCode.FORBIDDEN
    assert denied.value.context["required_role"] == "engineer"


@pytest.mark.parametrize(
    ("method", "role"),
    [
        ("GET", Role.VIEWER),
        ("HEAD", Role.VIEWER),
        ("POST", Role.ENGINEER),
        ("PATCH", Role.ENGINEER),
        ("DELETE", Role.ENGINEER),
        ("PUT", Role.ENGINEER),
    ],
)
def test_api_policy_by_method(method: str, role: Role) -> None:
    assert role_for_method(method) is role


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", "/", None),
        ("GET", "", None),
        ("GET", "/static-files/static/js/main.js", None),
        ("GET", "/health", None),
        ("GET", "/api/2.0/mlflow/experiments/get", Role.VIEWER),
        ("POST", "/api/2.0/mlflow/runs/search", Role.VIEWER),
        ("POST", "/ajax-api/2.0/mlflow/experiments/search", Role.VIEWER),
        ("POST", "/graphql", Role.VIEWER),
        ("POST", "/api/2.0/mlflow/runs/create", Role.ENGINEER),
        ("POST", "/api/2.0/mlflow/runs/log-batch", Role.ENGINEER),
        ("POST", "/api/2.0/mlflow/experiments/delete", Role.ENGINEER),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/1/a.txt", Role.ENGINEER),
        ("DELETE", "/api/2.0/mlflow/registered-models/delete", Role.ENGINEER),
        ("GET", "/get-artifact", Role.VIEWER),
    ],
)
def test_mlflow_policy(method: str, path: str, role: Role | None) -> None:
    assert mlflow_route_role(method, path) == role
