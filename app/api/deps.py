"""Typed dependencies: handler signatures say what they need.

Every use case comes from the one `Services` value the app was built with
(`app.state.services`); one generic getter answers 503 when a part of the service is not
running here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from app.core.access import Principal
from app.errors import ErrorCode, InvalidInput, Unavailable
from app.ports.health import HealthProbe
from app.ports.registry import ModelRegistry, ModelSignatures
from app.ports.tracking import ExperimentTracker
from app.services.deployments import Deployments
from app.services.diagnostics import Diagnostics
from app.services.features import Features
from app.services.lifecycle import Promotions
from app.services.llm import LlmGateway
from app.services.monitoring import Monitoring
from app.services.prediction import Predictor
from app.services.tokens import ApiTokens
from app.services.training import TrainingJobs


@dataclass(frozen=True)
class ApiContext:
    """What handlers need to know about where they are served."""

    api_base: str
    mlflow_prefix: str
    default_page_size: int
    max_page_size: int


class _NotRunning:
    """Stands for a part of the service that is not running here: any use of it is 503.
    Handed to the handler rather than raised at once, so that the request is validated
    first (bad input is a 4xx whatever runs)."""

    def __init__(self, missing: str) -> None:
        self._missing = missing

    def __getattr__(self, name: str) -> Any:
        raise Unavailable(ErrorCode.BACKEND_UNAVAILABLE, self._missing)


def _service(
    name: str, missing: str = "", *, lazy: bool = True
) -> Callable[[Request], Awaitable[Any]]:
    """A dependency on the `Services` field `name`; 503 with `missing` when it is None: once
    a handler uses it (`lazy`), else at once."""

    async def get(request: Request) -> Any:
        value = getattr(request.app.state.services, name)
        if value is None and not lazy:
            raise Unavailable(ErrorCode.BACKEND_UNAVAILABLE, missing)
        return _NotRunning(missing) if value is None else value

    get.__name__ = f"_{name}"
    return get


async def _principal(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


async def _context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


Tracker = Annotated[ExperimentTracker, Depends(_service("tracker"))]
Registry = Annotated[
    ModelRegistry, Depends(_service("registry", "The model registry is not running."))
]
Signatures = Annotated[
    ModelSignatures, Depends(_service("signatures", "The model registry is not running."))
]
PromotionsDep = Annotated[
    Promotions, Depends(_service("promotions", "The model registry is not running."))
]
DeploymentsDep = Annotated[Deployments, Depends(_service("deployments", "Serving is not running."))]
Predictions = Annotated[Predictor, Depends(_service("predictor", "Serving is not running."))]
Jobs = Annotated[TrainingJobs, Depends(_service("jobs", "Training is not running."))]
FeatureStoreDep = Annotated[
    Features, Depends(_service("features", "The feature store is not running."))
]
MonitoringDep = Annotated[Monitoring, Depends(_service("monitoring", "Monitoring is not running."))]
DiagnosticsDep = Annotated[
    Diagnostics, Depends(_service("diagnostics", "Diagnostics is not running."))
]
TokensDep = Annotated[ApiTokens, Depends(_service("tokens", "Token management is not running."))]
LlmDep = Annotated[LlmGateway, Depends(_service("llm", "The LLM backend is not running."))]
Probes = Annotated[tuple[HealthProbe, ...], Depends(_service("probes", lazy=False))]
CurrentPrincipal = Annotated[Principal, Depends(_principal)]
Context = Annotated[ApiContext, Depends(_context)]


@dataclass(frozen=True)
class PageRequest:
    """A validated page size and the caller's page token."""

    size: int
    token: str | None


async def _page(
    context: Context,
    page_size: Annotated[
        int | None, Query(ge=1, description="Items per page (default 50, at most 500).")
    ] = None,
    page_token: Annotated[
        str | None,
        Query(
            max_length=1024,
            pattern=r"^[A-Za-z0-9_\-]*$",
            description="`next_page_token` of the previous page.",
        ),
    ] = None,
) -> PageRequest:
    size = page_size or context.default_page_size
    if size > context.max_page_size:
        raise InvalidInput.for_field(
            "page_size", f"must be at most {context.max_page_size}", location="query"
        )
    return PageRequest(size=size, token=page_token or None)


PageParams = Annotated[PageRequest, Depends(_page)]
