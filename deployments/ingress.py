"""The API ingress deployment: a plain class, made a Serve deployment by the builder."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI


class Ingress:
    """Serves every `/api/v1/ml` route.

    Args:
        app: builds the API on the replica (the composition root's `ingress_app` with the
            settings and the peers' handles bound): FastAPI apps and the adapters inside
            them do not pickle, so Serve ships the recipe, not the app.
    """

    def __init__(self, app: Callable[[], FastAPI]) -> None:
        self._app = app

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Serve calls this on the replica, after `__init__`."""
        return self._app()
