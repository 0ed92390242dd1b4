"""The ML Workbench (the web page in `workbench/`, built by `scripts/setup`) served at
`/workbench/` next to the API, on the same origin: the page calls only the public API with
the user's token. The files themselves are public (they hold no data)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from app.api.problems import problem_response
from app.errors import ErrorCode

PREFIX = "/workbench"
# Nothing the page loads or calls may leave the service's origin (Chart.js sets inline
# styles on its canvases, hence style-src 'unsafe-inline').
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class _WorkbenchFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(_HEADERS)
        if path in ("", ".", "index.html"):
            response.headers["Cache-Control"] = "no-cache"  # the hashed assets can be cached
        return response


def mount_workbench(app: FastAPI, directory: Path | None) -> None:
    """Serve the built workbench from `directory`; if it was not built, `/workbench/` says
    how to build it (a 404 problem). None: no workbench routes at all."""
    if directory is None:
        return

    async def to_slash() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=308)

    app.add_api_route(PREFIX, to_slash, methods=["GET", "HEAD"], include_in_schema=False)
    if (directory / "index.html").is_file():
        app.mount(f"{PREFIX}/", _WorkbenchFiles(directory=directory, html=True), name="workbench")
        return

    async def not_built(request: Request) -> Response:
        return problem_response(
            request,
            code=ErrorCode.ROUTE_NOT_FOUND,
            status=404,
            detail=f"the workbench is not built (no {directory / 'index.html'}): run scripts/setup",
        )

    app.add_api_route(
        f"{PREFIX}/{{path:path}}", not_built, methods=["GET", "HEAD"], include_in_schema=False
    )
