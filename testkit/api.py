"""The API in-process, from settings and whichever use cases a test gives it.

`StubTracker` stands in for our `ExperimentTracker` port only, never for MLflow: the
same routes run against the real MLflow adapter in tests/integration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI

from app.api.factory import create_api
from app.ports.health import HealthProbe
from app.services.container import Services
from app.settings import Settings


def api_for(settings: Settings, services: Services) -> FastAPI:
    """The API app of `services`, with the settings' API section, tokens and MLflow prefix."""
    return create_api(
        services,
        api=settings.api,
        tokens=settings.auth.tokens,
        mlflow_prefix=settings.mlflow.ui_prefix,
    )


def build_app(settings: Settings, tracker: Any, probes: Sequence[HealthProbe] = ()) -> FastAPI:
    """The API with only a tracker (and health probes): the other routes answer 503."""
    return api_for(settings, Services(tracker=tracker, probes=tuple(probes)))


class StubTracker:
    """Our port, answering every call with `behaviour` (by default: must not be called)."""

    def __init__(self, behaviour: Callable[[str], Any] | None = None) -> None:
        self.calls: list[str] = []
        self._behaviour = behaviour

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if self._behaviour is None:
                raise AssertionError(f"the tracker must not be called ({name})")
            return self._behaviour(name)

        return call
