"""Per-request context: request id, body-size limit and a last-resort 500 guard.

A pure ASGI middleware (no BaseHTTPMiddleware: it would buffer streaming bodies).
Behind Ray Serve the proxy already assigns `x-request-id` (honouring one the client
sent) and echoes it on the response; the service reuses that id so logs, problem
bodies and the header agree. Served directly (tests, other ASGI servers), the
middleware assigns and echoes the id itself.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from fastapi import HTTPException
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.problems import PROBLEM_MEDIA_TYPE, internal_error_body, problem_body
from app.errors import ErrorCode
from app.logs import REQUEST_ID

log = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class RequestContextMiddleware:
    """Assign the request id, refuse oversized bodies, and turn crashes into a bare 500.

    Args:
        app: the wrapped ASGI app.
        max_body_bytes: larger bodies answer 413 before they are read.
        echo_request_id: add `x-request-id` to responses (False behind Serve's proxy,
            which adds it itself).
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, echo_request_id: bool) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.echo_request_id = echo_request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        token = REQUEST_ID.set(request_id)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if self.echo_request_id:
                    MutableHeaders(scope=message)["x-request-id"] = request_id
            await send(message)

        try:
            declared = _content_length(scope)
            if declared is not None and declared > self.max_body_bytes:
                await self._too_large(scope, send_with_id, request_id)
                return
            await self.app(scope, self._limited(receive), send_with_id)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if not started:
                body = internal_error_body(scope.get("path", ""), request_id)
                await _send_json(send_with_id, 500, body)
        finally:
            REQUEST_ID.reset(token)

    def _limited(self, receive: Receive) -> Receive:
        """Count streamed body bytes too (a body sent without Content-Length)."""
        seen = 0
        limit = self.max_body_bytes

        async def receive_limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # FastAPI re-raises HTTPException from body reading (and wraps others in
                    # a 400); the problem handlers render it as `payload_too_large`.
                    raise HTTPException(413, f"The request body is over {limit} bytes.")
            return message

        return receive_limited

    async def _too_large(self, scope: Scope, send: Send, request_id: str) -> None:
        body = problem_body(
            code=ErrorCode.PAYLOAD_TOO_LARGE,
            status=413,
            detail=f"The request body is over {self.max_body_bytes} bytes.",
            instance=scope.get("path", ""),
            request_id=request_id,
        )
        await _send_json(send, 413, body)


def _request_id(scope: Scope) -> str:
    for key, value in scope.get("headers", []):
        if key == b"x-request-id":
            candidate = bytes(value).decode("latin-1")
            if _SAFE_ID.match(candidate):
                return candidate
    return str(uuid.uuid4())


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
