"""The HTTP contract that holds before any store is touched: auth, validation, errors."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from app.api.routers import health as health_router
from app.api.security import GuardedRoute
from app.core.access import Role
from app.errors import ErrorCode, Unavailable
from app.ports.health import ComponentHealth, HealthStatus
from testkit.api import StubTracker, build_app
from testkit.auth import Tokens
from testkit.settings import settings_for
from testkit.waiting import wait_for

BASE = "/api/v1/ml"
PROBLEM = "application/problem+json"


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture
def tracker() -> StubTracker:
    return StubTracker()


@pytest.fixture
def client(tmp_path: Path, tokens: Tokens, tracker: StubTracker) -> TestClient:
    return TestClient(build_app(settings_for(tmp_path, tokens), tracker))


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "abc123", path)


def api_routes(client: TestClient) -> list[tuple[str, str, object]]:
    """(method, full path, route) of every API route the app serves."""
    return [
        (method, context.path, context.original_route)
        for context in iter_route_contexts(client.app.routes)  # type: ignore[attr-defined]
        if context.path.startswith(BASE)
        for method in context.methods or ()
    ]


def guarded_routes(client: TestClient) -> list[tuple[str, str, Role]]:
    return [
        (method, concrete(path), route.required_role)
        for method, path, route in api_routes(client)
        if isinstance(route, GuardedRoute) and route.required_role is not None
    ]


def assert_problem(response, status: int, code: ErrorCode) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code.value
    assert body["type"].endswith(code.value)
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["instance"].startswith("/")
    assert body["title"] and body["detail"]
    return body


def test_every_route_is_guarded_except_health(client: TestClient) -> None:
    routes = api_routes(client)
    assert len(routes) >= 12
    for _, path, route in routes:
        assert isinstance(route, GuardedRoute), path
        if not path.startswith(f"{BASE}/health"):
            assert route.required_role is not None, path


def test_reads_need_viewer_and_writes_more(client: TestClient) -> None:
    routes = guarded_routes(client)
    assert any(method == "POST" for method, _, _ in routes)
    # inference, online feature reads and diagnoses change nothing: viewers may call them
    reads_by_post = {
        f"{BASE}/models/abc123/diagnose",
        f"{BASE}/predict",
        f"{BASE}/features/serve",
        f"{BASE}/llm/v1/chat/completions",
        f"{BASE}/llm/v1/completions",
    }
    for method, path, role in routes:
        if path.startswith(f"{BASE}/auth/tokens"):  # token management: admins only
            assert role is Role.ADMIN, path
        elif method == "GET" or path in reads_by_post:
            assert role is Role.VIEWER, path
        else:
            assert role in {Role.ENGINEER, Role.APPROVER}, path
    approver_only = {path for _, path, role in routes if role is Role.APPROVER}
    assert approver_only == {f"{BASE}/models/abc123/approvals", f"{BASE}/models/abc123/policy"}


def test_no_token_is_401_before_the_body_is_read(client: TestClient, tracker: StubTracker) -> None:
    for method, path, _ in guarded_routes(client):
        response = client.request(method, path, content=b"{not json")
        body = assert_problem(response, 401, ErrorCode.UNAUTHENTICATED)
        assert "Bearer" in response.headers["www-authenticate"]
        assert body["instance"] == path
    assert tracker.calls == []


def test_unknown_token_is_401(client: TestClient) -> None:
    response = client.get(f"{BASE}/experiments", headers={"Authorization": "Bearer mls_nope"})
    assert_problem(response, 401, ErrorCode.UNAUTHENTICATED)


def test_viewer_cannot_write(client: TestClient, tokens: Tokens, tracker: StubTracker) -> None:
    writes = [(m, p, r) for m, p, r in guarded_routes(client) if r is not Role.VIEWER]
    assert writes
    for method, path, role in writes:
        response = client.request(
            method, path, json={"name": "x"}, headers=tokens.header(Role.VIEWER)
        )
        body = assert_problem(response, 403, ErrorCode.FORBIDDEN)
        assert body["context"]["required_role"] == role.value
    assert tracker.calls == []


def test_engineers_cannot_approve_or_set_policy(client: TestClient, tokens: Tokens) -> None:
    for method, path, role in guarded_routes(client):
        if role is Role.APPROVER:
            response = client.request(
                method, path, json={"version": 1}, headers=tokens.header(Role.ENGINEER)
            )
            assert_problem(response, 403, ErrorCode.FORBIDDEN)


def test_approver_alone_cannot_write(client: TestClient, tokens: Tokens) -> None:
    response = client.post(
        f"{BASE}/experiments", json={"name": "x"}, headers=tokens.header(Role.APPROVER)
    )
    assert_problem(response, 403, ErrorCode.FORBIDDEN)


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/experiments", {}, "name"),
        ("/experiments", {"name": ""}, "name"),
        ("/experiments", {"name": "   "}, "name"),
        ("/experiments", {"name": "x", "color": "red"}, "color"),
        ("/experiments", {"name": "x", "tags": {"mlservice.owner": "me"}}, "tags.mlservice.owner"),
        ("/experiments", {"name": "x", "tags": {"bad!key": "v"}}, "tags.bad!key"),
        ("/experiments/1/runs", {"metrics": [{"key": "a", "value": "high"}]}, "metrics"),
        ("/experiments/1/runs", {"metrics": [{"key": "../a", "value": 1}]}, "metrics"),
        ("/experiments/1/runs", {"params": {"lr": "x" * 6001}}, "params"),
        ("/experiments/1/runs", {"status": "DONE"}, "status"),
        (
            "/experiments/1/runs",
            {"status": "RUNNING", "end_time": "2026-01-01T00:00:00Z"},
            "body",
        ),
        (
            "/experiments/1/runs",
            {"datasets": [{"name": "d", "digest": "x" * 37, "source": "s"}]},
            "datasets.0.digest",
        ),
        ("/experiments/1/runs", {"tags": {"mlflow.user": "someone-else"}}, "tags.mlflow.user"),
        (
            "/experiments/1/runs",
            {"metrics": [{"key": "a", "value": 1, "timestamp": "1960-01-01T00:00:00Z"}]},
            "metrics.0.timestamp",
        ),
        ("/experiments/1/runs", {"start_time": "1969-12-31T00:00:00Z"}, "start_time"),
    ],
)
def test_invalid_bodies_are_422_naming_the_field(
    client: TestClient, tokens: Tokens, tracker: StubTracker, path: str, payload: dict, field: str
) -> None:
    response = client.post(BASE + path, json=payload, headers=tokens.header(Role.ENGINEER))
    body = assert_problem(response, 422, ErrorCode.VALIDATION_FAILED)
    fields = [e["field"] for e in body["errors"]]
    assert any(f == field or f.startswith(field + ".") for f in fields), fields
    assert body["detail"].startswith(body["errors"][0]["field"])
    assert tracker.calls == []


def test_bad_query_and_header_values_are_422(client: TestClient, tokens: Tokens) -> None:
    viewer = tokens.header(Role.VIEWER)
    body = assert_problem(
        client.get(f"{BASE}/experiments?page_size=100000", headers=viewer),
        422,
        ErrorCode.VALIDATION_FAILED,
    )
    assert body["errors"][0] == {
        "field": "page_size",
        "location": "query",
        "message": "must be at most 500",
        "type": "invalid",
    }
    body = assert_problem(
        client.get(f"{BASE}/experiments?page_token=garbage", headers=viewer),
        422,
        ErrorCode.INVALID_PAGE_TOKEN,
    )
    assert body["errors"][0]["field"] == "page_token"
    engineer = {**tokens.header(Role.ENGINEER), "Idempotency-Key": "has spaces"}
    body = assert_problem(
        client.post(f"{BASE}/experiments", json={"name": "x"}, headers=engineer),
        422,
        ErrorCode.VALIDATION_FAILED,
    )
    assert body["errors"][0]["location"] == "header"
    body = assert_problem(
        client.get(f"{BASE}/experiments/1/runs/compare?run_ids=a", headers=viewer),
        422,
        ErrorCode.VALIDATION_FAILED,
    )
    assert body["errors"][0]["field"] == "run_ids"
    assert_problem(
        client.get(f"{BASE}/experiments/bad%20id", headers=viewer),
        422,
        ErrorCode.VALIDATION_FAILED,
    )


def test_500_never_echoes_exception_text(tmp_path: Path, tokens: Tokens) -> None:
    def explode(name: str) -> None:
        raise RuntimeError("password=hunter2 at db.internal")

    client = TestClient(
        build_app(settings_for(tmp_path, tokens), StubTracker(explode)),
        raise_server_exceptions=False,
    )
    response = client.get(f"{BASE}/experiments/1", headers=tokens.header(Role.VIEWER))
    body = assert_problem(response, 500, ErrorCode.INTERNAL)
    assert body["detail"].startswith("An internal error occurred")
    assert "hunter2" not in response.text and "RuntimeError" not in response.text


def test_unavailable_backend_is_503(tmp_path: Path, tokens: Tokens) -> None:
    def down(name: str) -> None:
        raise Unavailable(ErrorCode.BACKEND_UNAVAILABLE, "The tracking store is unavailable.")

    client = TestClient(build_app(settings_for(tmp_path, tokens), StubTracker(down)))
    response = client.get(f"{BASE}/experiments/1", headers=tokens.header(Role.VIEWER))
    assert_problem(response, 503, ErrorCode.BACKEND_UNAVAILABLE)


@pytest.mark.parametrize(
    "error",
    [
        OSError(28, "No space left on device"),
        RuntimeError("(sqlite3.OperationalError) database or disk is full"),
    ],
)
def test_a_full_disk_anywhere_is_503_storage_full(
    tmp_path: Path, tokens: Tokens, error: Exception
) -> None:
    def full(name: str) -> None:
        try:
            raise error
        except Exception as exc:
            raise OSError(5, "write failed") from exc  # found through the chain too

    client = TestClient(
        build_app(settings_for(tmp_path, tokens), StubTracker(full)),
        raise_server_exceptions=False,
    )
    response = client.get(f"{BASE}/experiments/1", headers=tokens.header(Role.VIEWER))
    assert_problem(response, 503, ErrorCode.STORAGE_FULL)
    other = TestClient(
        build_app(settings_for(tmp_path, tokens), StubTracker(lambda n: open("/nonexistent/x"))),
        raise_server_exceptions=False,
    ).get(f"{BASE}/experiments/1", headers=tokens.header(Role.VIEWER))
    assert_problem(other, 500, ErrorCode.INTERNAL)  # any other OS error: still internal


def test_request_id_is_assigned_or_honoured(client: TestClient) -> None:
    first = client.get(f"{BASE}/health/live")
    second = client.get(f"{BASE}/health/live")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    given = client.get(f"{BASE}/health/live", headers={"x-request-id": "trace-42"})
    assert given.headers["x-request-id"] == "trace-42"
    unsafe = client.get(f"{BASE}/health/live", headers={"x-request-id": "a\tb" * 100})
    assert unsafe.headers["x-request-id"] != "a\tb" * 100


def test_oversized_bodies_are_413(tmp_path: Path, tokens: Tokens, tracker: StubTracker) -> None:
    settings = settings_for(tmp_path, tokens, api={"max_body_bytes": 2048})
    client = TestClient(build_app(settings, tracker))
    big = {"name": "x", "description": "d" * 4096}
    headers = tokens.header(Role.ENGINEER)
    assert_problem(
        client.post(f"{BASE}/experiments", json=big, headers=headers),
        413,
        ErrorCode.PAYLOAD_TOO_LARGE,
    )

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"name": "x", "description": "'
        for _ in range(10):
            yield b"d" * 1024
        yield b'"}'

    streamed = client.post(
        f"{BASE}/experiments",
        content=chunks(),
        headers={**headers, "content-type": "application/json"},
    )
    assert_problem(streamed, 413, ErrorCode.PAYLOAD_TOO_LARGE)
    assert tracker.calls == []


def test_unknown_route_and_method(client: TestClient, tokens: Tokens) -> None:
    assert_problem(client.get(f"{BASE}/nope"), 404, ErrorCode.ROUTE_NOT_FOUND)
    assert_problem(
        client.delete(f"{BASE}/experiments", headers=tokens.header(Role.ADMIN)),
        405,
        ErrorCode.METHOD_NOT_ALLOWED,
    )


class Probe:
    def __init__(
        self, name: str, status: HealthStatus, *, required: bool = True, delay: float = 0.0
    ) -> None:
        self.name, self.status, self.required, self.delay = name, status, required, delay

    def probe(self) -> ComponentHealth:
        time.sleep(self.delay)
        return ComponentHealth(self.name, self.status, required=self.required)


def test_health_is_public_and_reports_components(tmp_path: Path, tokens: Tokens) -> None:
    probes = [Probe("ray", HealthStatus.OK), Probe("feast", HealthStatus.DOWN, required=False)]
    client = TestClient(build_app(settings_for(tmp_path, tokens), StubTracker(), probes))
    response = client.get(f"{BASE}/health")
    assert response.status_code == 200
    report = response.json()
    assert report["ready"] and report["live"]
    assert [(c["name"], c["status"]) for c in report["components"]] == [
        ("ray", "ok"),
        ("feast", "down"),
    ]


def test_not_ready_when_a_required_component_is_down_or_hangs(
    tmp_path: Path, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health_router, "PROBE_TIMEOUT_S", 0.05)
    probes = [Probe("ray", HealthStatus.OK), Probe("mlflow_store", HealthStatus.OK, delay=0.5)]
    client = TestClient(build_app(settings_for(tmp_path, tokens), StubTracker(), probes))
    response = client.get(f"{BASE}/health/ready")
    assert response.status_code == 503
    components = {c["name"]: c for c in response.json()["components"]}
    assert components["mlflow_store"]["status"] == "down"
    assert components["mlflow_store"]["detail"] == "timed out"
    assert client.get(f"{BASE}/health/live").status_code == 200


def test_openapi_documents_every_endpoint_with_its_errors(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    operations = [
        (path, method, op) for path, item in spec["paths"].items() for method, op in item.items()
    ]
    assert len(operations) >= 9
    for path, method, op in operations:
        assert op.get("summary"), (path, method)
        responses = op["responses"]
        public = path.startswith(f"{BASE}/health")
        if not public:
            assert op["security"] == [{"bearerAuth": []}]
            assert {"401", "403"} <= set(responses), (path, method)
        if op.get("parameters") or op.get("requestBody"):  # input can be invalid
            assert "422" in responses, (path, method)
        if op.get("requestBody"):  # and a body can be too big: the limit is documented
            assert "At most 16777216 bytes" in responses["413"]["description"], (path, method)
        for status, response in responses.items():
            if int(status) >= 400 and not (public and status == "503"):
                content = response["content"]
                ingress = ["text/html"] if status == "400" else []  # HAProxy's own page
                assert list(content) == [PROBLEM, *ingress], (path, method, status)
                assert content[PROBLEM]["schema"]["$ref"].endswith("/Problem")
                assert content[PROBLEM]["example"]["status"] == int(status)
    create = spec["paths"][f"{BASE}/experiments"]["post"]
    assert "409" in create["responses"]
    schemas = spec["components"]["schemas"]
    assert "example" in schemas["RunCreate"] and "example" in schemas["ExperimentCreate"]
    assert set(schemas["ErrorCode"]["enum"]) == {code.value for code in ErrorCode}


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "\xff\xfe"}',  # not UTF-8
        b"[" * 100_000 + b"]" * 100_000,  # nested deeper than any parser goes
        b'{"name": ',  # cut short
    ],
    ids=["not-utf8", "deeply-nested", "truncated"],
)
def test_a_body_that_is_not_json_is_a_documented_400(
    client: TestClient, tokens: Tokens, tracker: StubTracker, body: bytes
) -> None:
    response = client.post(
        f"{BASE}/experiments",
        content=body,
        headers={**tokens.header(Role.ENGINEER), "content-type": "application/json"},
    )
    problem = assert_problem(response, 400, ErrorCode.MALFORMED_REQUEST)
    assert problem["title"] == "Malformed request"
    assert problem["errors"][0]["field"] == "body"
    assert "JSON" in problem["detail"]
    assert tracker.calls == []
    operation = client.get("/openapi.json").json()["paths"][f"{BASE}/experiments"]["post"]
    assert "400" in operation["responses"], operation["responses"].keys()


def test_a_wrong_method_lists_every_allowed_one(client: TestClient, tokens: Tokens) -> None:
    response = client.delete(f"{BASE}/experiments", headers=tokens.header(Role.ADMIN))
    assert_problem(response, 405, ErrorCode.METHOD_NOT_ALLOWED)
    assert sorted(response.headers["allow"].split(", ")) == ["GET", "POST"]


def test_times_are_iso_8601_not_numbers(client: TestClient, tokens: Tokens) -> None:
    from pydantic import ValidationError

    from app.api.schemas.features import MaterializeRequest

    for bad in (0, 1.5, "0", "1796197667", True):
        with pytest.raises(ValidationError, match="ISO 8601"):
            MaterializeRequest.model_validate({"end": bad})
    when = MaterializeRequest.model_validate({"end": "2026-12-01T09:00:00Z"}).end
    assert when is not None and when.isoformat() == "2026-12-01T09:00:00+00:00"
    audit = client.get(f"{BASE}/models/churn/audit?as_of=0", headers=tokens.header(Role.VIEWER))
    problem = assert_problem(audit, 422, ErrorCode.VALIDATION_FAILED)
    assert problem["errors"][0]["field"] == "as_of", problem
    assert "ISO 8601" in problem["detail"]


def test_a_stuck_probe_is_waited_for_not_started_again(
    tmp_path: Path, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health_router, "PROBE_TIMEOUT_S", 0.05)
    release = threading.Event()

    class Stuck:
        name, required, calls = "artifact_store", True, 0

        def probe(self) -> ComponentHealth:
            Stuck.calls += 1
            release.wait(30)  # a store that is out: connect timeouts and retries
            return ComponentHealth(self.name, HealthStatus.OK)

    stuck = Stuck()
    probes = [Probe("feature_online_store", HealthStatus.OK), stuck]
    client = TestClient(build_app(settings_for(tmp_path, tokens), StubTracker(), probes))
    try:
        for _ in range(20):  # a poller asking every few milliseconds
            components = {
                c["name"]: c["status"] for c in client.get(f"{BASE}/health").json()["components"]
            }
            assert components == {"feature_online_store": "ok", "artifact_store": "down"}
        assert Stuck.calls == 1
    finally:
        release.set()
    assert wait_for(
        lambda: client.get(f"{BASE}/health").json()["ready"], "the probe did not recover"
    )


def test_a_def_endpoint_runs_on_threads_that_outlive_its_request() -> None:
    """AnyIO ends the worker thread of a `def` endpoint with the request's task where the
    loop has no root task (a Ray Serve replica's); the API keeps its own threads."""
    from collections.abc import Awaitable, Callable
    from contextvars import ContextVar

    from fastapi import APIRouter, FastAPI, Request, Response

    from app.api.security import PUBLIC

    seen: ContextVar[str] = ContextVar("seen", default="unset")
    router = APIRouter(route_class=GuardedRoute)

    @router.get("/where", openapi_extra=PUBLIC)
    def where(q: int) -> dict[str, object]:
        return {"thread": threading.current_thread().name, "q": q, "seen": seen.get()}

    app = FastAPI()

    @app.middleware("http")
    async def mark(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        seen.set("by the middleware")  # the endpoint runs in a copy of the request's context
        return await call_next(request)

    app.include_router(router)
    with TestClient(app) as client:
        answers = [client.get("/where", params={"q": i}).json() for i in range(3)]
    assert [a["q"] for a in answers] == [0, 1, 2]
    assert {a["thread"] for a in answers} == {answers[0]["thread"]}  # one thread, kept
    assert answers[0]["thread"].startswith("api")
    assert {a["seen"] for a in answers} == {"by the middleware"}
