"""Tokens made through the API: create, use, list, revoke, expire; over a real SQLite
service database (the same store the replicas share)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.adapters.token_store import SqlTokenStore
from app.core.access import Role, token_digest
from app.services.container import Services
from app.services.tokens import ApiTokens
from testkit.api import StubTracker, api_for
from testkit.auth import Tokens
from testkit.settings import settings_for

BASE = "/api/v1/ml"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


def replica(tmp_path: Path, tokens: Tokens, clock: Clock) -> TestClient:
    """One ingress replica's API on the shared database in `tmp_path`."""
    settings = settings_for(tmp_path, tokens)
    store = SqlTokenStore(f"sqlite:///{tmp_path / 'service.db'}")
    services = Services(tracker=StubTracker(), tokens=ApiTokens(store, clock))
    return TestClient(api_for(settings, services))


@pytest.fixture
def client(tmp_path: Path, tokens: Tokens, clock: Clock) -> TestClient:
    return replica(tmp_path, tokens, clock)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def create(client: TestClient, tokens: Tokens, **body: object) -> dict[str, object]:
    answer = client.post(f"{BASE}/auth/tokens", json=body, headers=tokens.header(Role.ADMIN))
    assert answer.status_code == 201, answer.text
    created: dict[str, object] = answer.json()
    return created


def test_an_admin_creates_a_token_whose_secret_is_shown_once_and_stored_as_a_hash(
    client: TestClient, tokens: Tokens, tmp_path: Path, clock: Clock
) -> None:
    created = create(client, tokens, name="ci-pipeline", roles=["engineer"], expires_in_days=30)
    secret = str(created["token"])
    assert secret.startswith("mls_")
    assert created["roles"] == ["engineer"] and created["state"] == "active"
    assert created["created_by"] == "admin-user" and created["source"] == "api"
    assert created["expires_at"] == "2027-02-14T08:00:00Z"  # 1.8e9 s + 30 days
    stored = SqlTokenStore(f"sqlite:///{tmp_path / 'service.db'}").get(str(created["id"]))
    assert stored is not None and stored.sha256 == token_digest(secret)
    assert secret.encode() not in (tmp_path / "service.db").read_bytes()

    me = client.get(f"{BASE}/auth/me", headers=bearer(secret))
    assert me.json() == {"name": "ci-pipeline", "roles": ["engineer"]}
    listed = client.get(f"{BASE}/auth/tokens", headers=tokens.header(Role.ADMIN)).json()
    (row,) = listed["items"]
    assert "token" not in row and row["id"] == created["id"]
    assert row["last_used_at"] == "2027-01-15T08:00:00Z"  # used once, just now
    again = client.get(f"{BASE}/auth/tokens/{created['id']}", headers=tokens.header(Role.ADMIN))
    assert again.json() == row


def test_a_revocation_holds_at_once_on_every_replica(
    tmp_path: Path, tokens: Tokens, clock: Clock
) -> None:
    one, two = replica(tmp_path, tokens, clock), replica(tmp_path, tokens, clock)
    created = create(one, tokens, name="notebook", roles=["viewer"])
    secret = bearer(str(created["token"]))
    assert two.get(f"{BASE}/auth/me", headers=secret).status_code == 200
    revoked = one.delete(f"{BASE}/auth/tokens/{created['id']}", headers=tokens.header(Role.ADMIN))
    assert revoked.status_code == 200
    assert revoked.json()["state"] == "revoked" and revoked.json()["revoked_by"] == "admin-user"
    for replica_client in (one, two):
        refused = replica_client.get(f"{BASE}/auth/me", headers=secret)
        assert refused.status_code == 401
        assert refused.json()["code"] == "unauthenticated"
        assert "revoked" in refused.json()["detail"]
    twice = two.delete(f"{BASE}/auth/tokens/{created['id']}", headers=tokens.header(Role.ADMIN))
    assert twice.json() == revoked.json()  # revoking again changes nothing
    listing = one.get(f"{BASE}/auth/tokens", headers=tokens.header(Role.ADMIN)).json()
    assert listing["items"] == []
    everything = one.get(
        f"{BASE}/auth/tokens", params={"include_revoked": True}, headers=tokens.header(Role.ADMIN)
    ).json()
    assert [t["id"] for t in everything["items"]] == [created["id"]]


def test_an_expired_token_is_refused_and_one_without_expiry_is_not(
    client: TestClient, tokens: Tokens, clock: Clock
) -> None:
    short = create(client, tokens, name="short", roles=["viewer"], expires_in_days=1)
    forever = create(client, tokens, name="forever", roles=["viewer"], expires_in_days=None)
    assert forever["expires_at"] is None
    clock.now += 86400
    refused = client.get(f"{BASE}/auth/me", headers=bearer(str(short["token"])))
    assert refused.status_code == 401 and "expired at" in refused.json()["detail"]
    assert client.get(f"{BASE}/auth/me", headers=bearer(str(forever["token"]))).status_code == 200
    row = client.get(f"{BASE}/auth/tokens/{short['id']}", headers=tokens.header(Role.ADMIN))
    assert row.json()["state"] == "expired"


def test_the_roles_of_a_created_token_are_enforced(client: TestClient, tokens: Tokens) -> None:
    viewer = bearer(str(create(client, tokens, name="v", roles=["viewer"])["token"]))
    assert client.get(f"{BASE}/auth/tokens", headers=viewer).status_code == 403
    body = {"name": "x", "roles": ["admin"]}
    assert client.post(f"{BASE}/auth/tokens", json=body, headers=viewer).status_code == 403
    admin = bearer(str(create(client, tokens, name="second-admin", roles=["admin"])["token"]))
    assert client.get(f"{BASE}/auth/tokens", headers=admin).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "roles": ["viewer"]}, "name"),
        ({"name": "x", "roles": []}, "roles"),
        ({"name": "x", "roles": ["root"]}, "roles.0"),
        ({"name": "x", "roles": ["viewer"], "expires_in_days": 0}, "expires_in_days"),
        ({"name": "x", "roles": ["viewer"], "secret": "mine"}, "secret"),
    ],
)
def test_bad_token_requests_name_the_field(
    client: TestClient, tokens: Tokens, body: dict[str, object], field: str
) -> None:
    answer = client.post(f"{BASE}/auth/tokens", json=body, headers=tokens.header(Role.ADMIN))
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == [field]


def test_an_unknown_token_id_is_404(client: TestClient, tokens: Tokens) -> None:
    answer = client.delete(f"{BASE}/auth/tokens/tok_0000", headers=tokens.header(Role.ADMIN))
    assert answer.status_code == 404 and answer.json()["code"] == "token_not_found"


def test_listing_pages(client: TestClient, tokens: Tokens, clock: Clock) -> None:
    for index in range(5):
        clock.now += 1
        create(client, tokens, name=f"t{index}", roles=["viewer"])
    names: list[str] = []
    params: dict[str, object] = {"page_size": 2}
    while True:
        page = client.get(f"{BASE}/auth/tokens", params=params, headers=tokens.header(Role.ADMIN))
        names += [t["name"] for t in page.json()["items"]]
        if not page.json()["next_page_token"]:
            break
        params["page_token"] = page.json()["next_page_token"]
    assert names == ["t4", "t3", "t2", "t1", "t0"]
