"""The MLflow server behind the service's tokens and roles, at one URL prefix.

MLflow is told its prefix (`--static-prefix`), so it registers every route, UI and REST
alike, under it. Ray Serve routes `<prefix>/...` to this app and marks the prefix as the
ASGI `root_path`, which Starlette would strip a second time (every path doubled). The
gateway gives MLflow the full path with an empty `root_path`: one prefixing mechanism.

Access: the UI shell (index page, static bundle) and MLflow's health probe are public;
data needs `viewer`, changes need `engineer`. Bearer tokens (`MLFLOW_TRACKING_TOKEN`) and
HTTP Basic with the token as password both work; a 401 carries a Basic challenge so a
browser asks for the token once.

Artifacts: MLflow serves them itself (`--serve-artifacts`, the artifact root as its
destination), and the gateway shows clients every artifact location under that root as
`mlflow-artifacts:/...` (the store keeps the real location, which the service's own
processes read directly). A client then needs only the URL and a token: uploads and
downloads go through `<prefix>/api/2.0/mlflow-artifacts/`, never to a server path or to
the bucket.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.problems import PROBLEM_MEDIA_TYPE, problem_body, status_of
from app.api.security import authenticate_header
from app.core.access import TokenBook, authorize, mlflow_route_role
from app.errors import DomainError, InvalidInput

_CHALLENGE = b'Basic realm="ML Service (token as password)", charset="UTF-8"'
# MLflow's REST answers that may carry artifact locations (runs, experiments, logged models,
# model versions); artifact contents pass untouched (`_CONTENT_ROUTES`).
_METADATA_APIS = (
    "/api/2.0/mlflow/",
    "/ajax-api/2.0/mlflow/",
    "/api/3.0/mlflow/",
    "/ajax-api/3.0/mlflow/",
)
_CONTENT_ROUTES = ("upload-artifact", "get-artifact", "get-trace-artifact", "/artifacts/files")
# The requests that carry a location a client chose: checked and mapped to the store's.
_LOCATION_REQUESTS = ("experiments/create", "model-versions/create")
_PROXIED = "mlflow-artifacts:"
# Locations a client may give: proxied ones, and MLflow's own indirections.
_CLIENT_SCHEMES = (_PROXIED, "runs:/", "models:/")
# The fields of MLflow's messages that hold an artifact location (run, experiment, logged
# model, model version); other strings (params, tags) are the user's and stay as sent.
_LOCATION_FIELDS = frozenset({"artifact_uri", "artifact_location", "source", "storage_location"})


class ArtifactLocations:
    """Translates the store's artifact locations under `root` to proxied ones and back.

    Args:
        root: the artifact root MLflow serves (a local directory or s3://bucket/prefix).
    """

    def __init__(self, root: str) -> None:
        root = root.rstrip("/")
        self._roots = (root,) if "://" in root else (f"file://{root}", root)
        self._root = root

    def to_client(self, value: str) -> str:
        """`<root>/x/y` (or `file://<root>/x/y`) as `mlflow-artifacts:/x/y`; others as given."""
        for root in self._roots:
            if value == root or value.startswith(root + "/"):
                return f"{_PROXIED}/{value[len(root) :].lstrip('/')}"
        return value

    def to_store(self, value: str) -> str:
        """A client's location as the store's: `mlflow-artifacts:/x/y` as `<root>/x/y`;
        `runs:/`, `models:/`, empty and locations already under the root as given.

        Raises:
            InvalidInput: any other location (a server path, another bucket, a host), or
                one that climbs out of the root.
        """
        if not value or value.startswith(_CLIENT_SCHEMES[1:]) or self.to_client(value) != value:
            if ".." in unquote(value).split("/"):
                raise _bad_location(value)
            return value
        if not value.startswith(_PROXIED):
            raise _bad_location(value)
        relative = value[len(_PROXIED) :]
        if relative.startswith("//"):  # mlflow-artifacts://host/...: another server
            raise _bad_location(value)
        relative = relative.lstrip("/")
        if ".." in unquote(relative).split("/"):
            raise _bad_location(value)
        return f"{self._root}/{relative}" if relative else self._root


def _bad_location(value: str) -> InvalidInput:
    return InvalidInput.for_field(
        "artifact_location",
        f"{value[:200]!r} is not a location a client may choose: use an mlflow-artifacts:/, "
        "runs:/ or models:/ URI, or leave it empty",
    )


class MlflowGateway:
    """ASGI wrapper: path normalisation and access control in front of MLflow's app.

    Args:
        app: MLflow's ASGI app, built with the static prefix `prefix`.
        prefix: the URL prefix, e.g. `/mlflow`.
        token_book: the known tokens.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        prefix: str,
        token_book: TokenBook,
        locations: ArtifactLocations | None = None,
    ) -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")
        self.token_book = token_book
        self.locations = locations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"}:
            await self.app(scope, receive, send)
            return
        full = self._full_path(scope)
        scope = {**scope, "root_path": "", "path": full, "raw_path": full.encode("utf-8")}
        if scope["type"] == "http":
            role = mlflow_route_role(scope["method"], full[len(self.prefix) :])
            if role is not None:
                try:
                    header = _header(scope, b"authorization")
                    principal = await authenticate_header(self.token_book, header)
                    authorize(principal, role)
                except DomainError as exc:
                    await _refuse(send, exc, full, _header(scope, b"x-request-id") or "")
                    return
            api = full[len(self.prefix) :]
            metadata = api.startswith(_METADATA_APIS) and not any(
                route in api for route in _CONTENT_ROUTES
            )
            if self.locations is not None and metadata:
                if scope["method"] == "POST" and api.endswith(_LOCATION_REQUESTS):
                    try:
                        scope, receive = await _rewritten_request(
                            scope, receive, self.locations.to_store
                        )
                    except InvalidInput as exc:
                        await _refuse(send, exc, full, _header(scope, b"x-request-id") or "")
                        return
                send = _rewritten_response(send, self.locations.to_client)
        await self.app(scope, receive, send)

    def _full_path(self, scope: Scope) -> str:
        path = str(scope.get("path", ""))
        if path == self.prefix or path.startswith(self.prefix + "/"):
            return path
        return self.prefix + path  # served with the prefix already stripped


async def _rewritten_request(
    scope: Scope, receive: Receive, rewrite: Callable[[str], str]
) -> tuple[Scope, Receive]:
    """The request with its JSON body's locations rewritten: the body is read whole, and
    the scope's content-length is the new body's (MLflow's WSGI side reads exactly that)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = _rewrite_json(b"".join(chunks), rewrite)
    headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    sent = False

    async def replay() -> Any:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return {**scope, "headers": headers}, replay


def _rewritten_response(send: Send, rewrite: Callable[[str], str]) -> Send:
    """`send` that rewrites the locations in a JSON answer (buffered; MLflow's metadata
    answers are small) and fixes its content-length."""
    start: dict[str, Any] | None = None
    chunks: list[bytes] = []

    async def wrapped(message: Any) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            if b"json" not in (_header(message, b"content-type") or "").encode():
                start = None
                await send(message)
                return
            start = dict(message)
            return
        if message["type"] != "http.response.body" or start is None:
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = _rewrite_json(b"".join(chunks), rewrite)
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped


def _rewrite_json(body: bytes, rewrite: Callable[[str], str]) -> bytes:
    """The JSON document with `rewrite` applied to its location fields; other bodies as
    given."""
    if not body:
        return body
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body
    changed = _map_strings(document, rewrite)
    return body if changed == document else json.dumps(changed).encode("utf-8")


def _map_strings(value: Any, rewrite: Callable[[str], str]) -> Any:
    if isinstance(value, list):
        return [_map_strings(item, rewrite) for item in value]
    if isinstance(value, dict):
        return {
            key: rewrite(item)
            if key in _LOCATION_FIELDS and isinstance(item, str)
            else _map_strings(item, rewrite)
            for key, item in value.items()
        }
    return value


def _header(scope: Any, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def _refuse(send: Send, exc: DomainError, path: str, request_id: str) -> None:
    status = status_of(exc)
    body = problem_body(
        code=exc.code,
        status=status,
        detail=exc.message,
        instance=path,
        request_id=request_id,
        field_errors=exc.field_errors,
        context=exc.context,
    )
    payload = json.dumps(body).encode("utf-8")
    headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(payload)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", _CHALLENGE))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
