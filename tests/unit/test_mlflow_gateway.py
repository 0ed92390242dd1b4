"""The gateway's own logic (paths, access) in front of a recording ASGI app.

The same gateway runs in front of MLflow's real server in tests/integration and tests/e2e.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from app.api.mlflow_gateway import ArtifactLocations, MlflowGateway
from app.core.access import Role, TokenBook, mint_token, token_digest
from app.errors import InvalidInput

TOKENS = {role: mint_token() for role in Role}
BOOK = TokenBook.of((f"{r}-user", [r], token_digest(t)) for r, t in TOKENS.items())


class Recorder:
    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def call(
    method: str, path: str, *, root_path: str = "/mlflow", authorization: str | None = None
) -> tuple[Recorder, list[dict[str, Any]]]:
    recorder = Recorder()
    gateway = MlflowGateway(recorder, prefix="/mlflow", token_book=BOOK)
    headers = [(b"x-request-id", b"req-1")]
    if authorization:
        headers.append((b"authorization", authorization.encode()))
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": root_path,
        "headers": headers,
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(gateway(scope, receive, send))
    return recorder, sent


def bearer(role: Role) -> str:
    return f"Bearer {TOKENS[role]}"


def test_mlflow_gets_the_full_path_and_no_root_path() -> None:
    recorder, sent = call(
        "POST", "/mlflow/api/2.0/mlflow/runs/search", authorization=bearer(Role.VIEWER)
    )
    assert sent[0]["status"] == 200
    (scope,) = recorder.scopes
    assert scope["path"] == "/mlflow/api/2.0/mlflow/runs/search"
    assert scope["root_path"] == ""
    assert scope["raw_path"] == b"/mlflow/api/2.0/mlflow/runs/search"


def test_a_stripped_path_gets_its_prefix_back() -> None:
    recorder, _ = call("GET", "/static-files/app.js", root_path="")
    assert recorder.scopes[0]["path"] == "/mlflow/static-files/app.js"


@pytest.mark.parametrize(
    "path", ["/mlflow", "/mlflow/", "/mlflow/static-files/x.js", "/mlflow/health"]
)
def test_the_ui_shell_is_public(path: str) -> None:
    recorder, sent = call("GET", path)
    assert sent[0]["status"] == 200 and recorder.scopes


def test_data_needs_a_token_and_the_challenge_lets_browsers_ask() -> None:
    recorder, sent = call("GET", "/mlflow/ajax-api/2.0/mlflow/experiments/get")
    assert recorder.scopes == []
    start, body = sent
    assert start["status"] == 401
    headers = dict(start["headers"])
    assert headers[b"www-authenticate"].startswith(b"Basic ")
    assert headers[b"content-type"] == b"application/problem+json"
    problem = json.loads(body["body"])
    assert problem["code"] == "unauthenticated" and problem["request_id"] == "req-1"


def test_basic_auth_with_the_token_as_password() -> None:
    basic = "Basic " + base64.b64encode(f"anyone:{TOKENS[Role.VIEWER]}".encode()).decode()
    recorder, sent = call("GET", "/mlflow/ajax-api/2.0/mlflow/experiments/get", authorization=basic)
    assert sent[0]["status"] == 200 and recorder.scopes


def test_viewers_read_engineers_write() -> None:
    create = "/mlflow/api/2.0/mlflow/runs/create"
    recorder, sent = call("POST", create, authorization=bearer(Role.VIEWER))
    assert sent[0]["status"] == 403 and recorder.scopes == []
    recorder, sent = call("POST", create, authorization=bearer(Role.ENGINEER))
    assert sent[0]["status"] == 200 and recorder.scopes


def test_artifact_locations_under_the_root_are_shown_proxied_and_read_back() -> None:
    local = ArtifactLocations("/srv/data/mlflow/artifacts/")
    assert local.to_client("/srv/data/mlflow/artifacts/7/run/artifacts") == (
        "mlflow-artifacts:/7/run/artifacts"
    )
    assert local.to_client("file:///srv/data/mlflow/artifacts/7") == "mlflow-artifacts:/7"
    assert local.to_client("/srv/data/mlflow/artifacts-other/7") == (
        "/srv/data/mlflow/artifacts-other/7"
    )
    assert local.to_store("mlflow-artifacts:/7/run") == "/srv/data/mlflow/artifacts/7/run"
    s3 = ArtifactLocations("s3://ml-artifacts/mlflow")
    assert s3.to_client("s3://ml-artifacts/mlflow/abc/model") == "mlflow-artifacts:/abc/model"
    assert s3.to_client("s3://other/mlflow/abc") == "s3://other/mlflow/abc"
    assert s3.to_store("mlflow-artifacts:/abc") == "s3://ml-artifacts/mlflow/abc"
    for given in ("models:/m-1", "runs:/abc/model", "", "s3://ml-artifacts/mlflow/abc"):
        assert s3.to_store(given) == given


@pytest.mark.parametrize(
    "location",
    [
        "/etc",  # a server path
        "file:///srv/data",
        "s3://other-bucket/key",  # another bucket, with the service's keys
        "mlflow-artifacts://evil.example:80/x",  # another server
        "mlflow-artifacts:/7/../../etc",
        "mlflow-artifacts:/7/%2e%2e/%2e%2e/etc",
        "s3://ml-artifacts/mlflow/a/../../other",
    ],
)
def test_a_client_cannot_choose_a_location_outside_the_proxied_root(location: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        ArtifactLocations("s3://ml-artifacts/mlflow").to_store(location)
    assert refused.value.field_errors[0].field == "artifact_location"


def test_a_location_in_a_request_is_mapped_and_its_length_follows() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        seen["body"] = json.loads(message["body"])
        seen["length"] = dict(scope["headers"])[b"content-length"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    gateway = MlflowGateway(
        app, prefix="/mlflow", token_book=BOOK, locations=ArtifactLocations("s3://b/mlflow")
    )
    payload = json.dumps({"name": "m", "source": "mlflow-artifacts:/1/r/artifacts/model"})
    chunks = [payload[:10].encode(), payload[10:].encode()]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        body = chunks.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/mlflow/api/2.0/mlflow/model-versions/create",
        "root_path": "",
        "headers": [
            (b"authorization", bearer(Role.ENGINEER).encode()),
            (b"content-length", str(len(payload)).encode()),
        ],
    }
    asyncio.run(gateway(scope, receive, send))
    assert seen["body"]["source"] == "s3://b/mlflow/1/r/artifacts/model"
    assert int(seen["length"]) == len(json.dumps(seen["body"]))

    chunks[:] = [json.dumps({"name": "e", "artifact_location": "s3://other/x"}).encode()]
    sent.clear()
    refused = {**scope, "path": "/mlflow/api/2.0/mlflow/experiments/create"}
    asyncio.run(gateway(refused, receive, send))
    assert sent[0]["status"] == 422
    assert json.loads(sent[-1]["body"])["errors"][0]["field"] == "artifact_location"


def test_only_location_fields_of_metadata_answers_are_rewritten() -> None:
    root = "/srv/artifacts"
    answer = {
        "run": {
            "info": {"artifact_uri": f"{root}/1/r/artifacts"},
            "data": {"params": [{"key": "path", "value": f"{root}/1"}]},
        }
    }

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = json.dumps(answer).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"999")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    gateway = MlflowGateway(
        app, prefix="/mlflow", token_book=BOOK, locations=ArtifactLocations(root)
    )
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    for path in ("/mlflow/api/2.0/mlflow/runs/get", "/mlflow/api/2.0/mlflow-artifacts/x.json"):
        sent.clear()
        scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "root_path": "",
            "headers": [(b"authorization", bearer(Role.VIEWER).encode())],
        }
        asyncio.run(gateway(scope, receive, send))
        body = json.loads(sent[-1]["body"])
        if "mlflow-artifacts" in path:  # artifact contents pass untouched
            assert body == answer
            continue
        assert body["run"]["info"]["artifact_uri"] == "mlflow-artifacts:/1/r/artifacts"
        assert body["run"]["data"]["params"][0]["value"] == f"{root}/1"  # the user's string
        length = dict(sent[0]["headers"])[b"content-length"]
        assert int(length) == len(sent[-1]["body"])
