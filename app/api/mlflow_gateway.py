"""The MLflow server behind the service's tokens and roles, at one URL prefix.

MLflow is told its prefix (`--static-prefix`), so it registers every route, UI and REST
alike, under it. Ray Serve routes `<prefix>/...` to this app and marks the prefix as the
ASGI `root_path`, which Starlette would strip a second time (every path doubled). The
gateway gives MLflow the full path with an empty `root_path`: one prefixing mechanism.

Access: the UI shell (index page, static bundle) and MLflow's health probe are public;
data needs `viewer`, changes need `engineer`. Bearer tokens (`MLFLOW_TRACKING_TOKEN`) and
HTTP Basic with the token as password both work; a 401 carries a Basic challenge so a
browser asks for the token once.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.problems import PROBLEM_MEDIA_TYPE, problem_body
from app.core.access import TokenBook, authenticate, authorize, mlflow_route_role
from app.errors import DomainError, Unauthenticated

_CHALLENGE = b'Basic realm="ML Service (token as password)", charset="UTF-8"'


class MlflowGateway:
    """ASGI wrapper: path normalisation and access control in front of MLflow's app.

    Args:
        app: MLflow's ASGI app, built with the static prefix `prefix`.
        prefix: the URL prefix, e.g. `/mlflow`.
        token_book: the known tokens.
    """

    def __init__(self, app: ASGIApp, *, prefix: str, token_book: TokenBook) -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")
        self.token_book = token_book

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
                    principal = authenticate(self.token_book, _header(scope, b"authorization"))
                    authorize(principal, role)
                except DomainError as exc:
                    await _refuse(send, exc, full, _header(scope, b"x-request-id") or "")
                    return
        await self.app(scope, receive, send)

    def _full_path(self, scope: Scope) -> str:
        path = str(scope.get("path", ""))
        if path == self.prefix or path.startswith(self.prefix + "/"):
            return path
        return self.prefix + path  # served with the prefix already stripped


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def _refuse(send: Send, exc: DomainError, path: str, request_id: str) -> None:
    status = 401 if isinstance(exc, Unauthenticated) else 403
    body = problem_body(
        code=exc.code,
        status=status,
        detail=exc.message,
        instance=path,
        request_id=request_id,
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
