"""Authentication and authorisation of API routes, checked before the body is read.

Every route is guarded by default: reads need `viewer`, every other method needs
`engineer`, so a new mutating route cannot forget its check. A route states a different
role with `openapi_extra=requires(Role.APPROVER)`, or opts out with `openapi_extra=PUBLIC`.
The check runs before FastAPI parses the body, so a write without a token answers 401
(and a viewer's write 403) whatever its body holds.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from app.api.problems import problem_responses
from app.api.threads import on_api_threads, run_blocking
from app.core.access import (
    Principal,
    Role,
    TokenBook,
    authenticate,
    authorize,
    credential_from_header,
    role_for_method,
)

ROLE_KEY = "x-required-role"
PUBLIC: dict[str, Any] = {ROLE_KEY: None}
SECURITY_SCHEME = "bearerAuth"


async def authenticate_header(book: TokenBook, authorization: str | None) -> Principal:
    """`authenticate`, off the event loop when the check does I/O (a stored token's lookup,
    the issuer's keys)."""
    token = credential_from_header(authorization)
    if token is not None and book.blocks(token):
        return await run_blocking(authenticate, book, authorization)
    return authenticate(book, authorization)


def requires(role: Role) -> dict[str, Any]:
    """`openapi_extra` for a route that needs `role`."""
    return {ROLE_KEY: role.value}


class GuardedRoute(APIRoute):
    """An APIRoute that authenticates and authorises before anything else. A `def` endpoint
    runs on the API's threads (`app.api.threads`), which outlive the request."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = on_api_threads(endpoint)
        extra = dict(kwargs.get("openapi_extra") or {})
        methods = kwargs.get("methods") or ["GET"]
        if ROLE_KEY in extra:
            raw = extra[ROLE_KEY]
            self.required_role: Role | None = Role(raw) if raw is not None else None
        else:
            self.required_role = role_for_method(next(iter(methods)))
        if self.required_role is not None:
            extra[ROLE_KEY] = self.required_role.value
            extra["security"] = [{SECURITY_SCHEME: []}]
            kwargs["responses"] = {**problem_responses(401, 403), **(kwargs.get("responses") or {})}
            access = f"Requires a bearer token with the `{self.required_role}` role."
        else:
            extra.pop(ROLE_KEY, None)
            extra["security"] = []
            access = "Public: no token needed."
        doc = inspect.getdoc(endpoint) or ""
        if not kwargs.get("summary") and doc:
            kwargs["summary"] = doc.splitlines()[0]
        kwargs["description"] = f"{kwargs.get('description') or ''}\n\n{access}".strip()
        kwargs["openapi_extra"] = extra
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        role = self.required_role
        if role is None:
            return handler

        async def guarded(request: Request) -> Response:
            book: TokenBook = request.app.state.token_book
            principal = await authenticate_header(book, request.headers.get("authorization"))
            authorize(principal, role)
            request.state.principal = principal
            return await handler(request)

        return guarded
