"""Typed dependencies: handler signatures say what they need."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from app.backends import Backends
from app.core.access import Principal
from app.errors import ErrorCode, InvalidInput, Unavailable
from app.feature_store import Features
from app.llm.gateway import LlmGateway
from app.monitoring import Monitoring
from app.ports import ExperimentTracker, HealthProbe, ModelRegistry, ServingControl
from app.prediction import Predictor
from app.training import TrainingJobs


@dataclass(frozen=True)
class ApiContext:
    """What handlers need to know about where they are served."""

    api_base: str
    mlflow_prefix: str
    default_page_size: int
    max_page_size: int


async def _tracker(request: Request) -> ExperimentTracker:
    tracker: ExperimentTracker = request.app.state.tracker
    return tracker


async def _principal(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


async def _context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


async def _registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry | None = request.app.state.registry
    if registry is None:
        raise Unavailable(ErrorCode.BACKEND_UNAVAILABLE, "The model registry is not running.")
    return registry


async def _traffic(request: Request) -> ServingControl:
    traffic: ServingControl | None = request.app.state.traffic
    if traffic is None:
        raise Unavailable(ErrorCode.BACKEND_UNAVAILABLE, "Serving is not running.")
    return traffic


async def _predictor(request: Request) -> Predictor:
    predictor: Predictor | None = request.app.state.predictor
    if predictor is None:
        raise Unavailable(ErrorCode.BACKEND_UNAVAILABLE, "Serving is not running.")
    return predictor


async def _jobs(request: Request) -> TrainingJobs:
    jobs: TrainingJobs | None = request.app.state.jobs
    if jobs is None:
        raise Unavailable(ErrorCode.BACKEND_UNAVAILABLE, "Training is not running.")
    return jobs


async def _features(request: Request) -> Features:
    features: Features | None = request.app.state.features
    if features is None:
        raise Unavailable(ErrorCode.BACKEND_UNAVAILABLE, "The feature store is not running.")
    return features


async def _monitoring(request: Request) -> Monitoring:
    monitoring: Monitoring | None = request.app.state.monitoring
    if monitoring is None:
        raise Unavailable(ErrorCode.BACKEND_UNAVAILABLE, "Monitoring is not running.")
    return monitoring


async def _backends(request: Request) -> Backends:
    backends: Backends = request.app.state.backends
    return backends


async def _llm(request: Request) -> LlmGateway:
    llm: LlmGateway | None = request.app.state.llm
    if llm is None:
        raise Unavailable(ErrorCode.BACKEND_UNAVAILABLE, "The LLM backend is not running.")
    return llm


async def _probes(request: Request) -> tuple[HealthProbe, ...]:
    probes: tuple[HealthProbe, ...] = request.app.state.probes
    return probes


Tracker = Annotated[ExperimentTracker, Depends(_tracker)]
Registry = Annotated[ModelRegistry, Depends(_registry)]
Traffic = Annotated[ServingControl, Depends(_traffic)]
Predictions = Annotated[Predictor, Depends(_predictor)]
Jobs = Annotated[TrainingJobs, Depends(_jobs)]
FeatureStoreDep = Annotated[Features, Depends(_features)]
MonitoringDep = Annotated[Monitoring, Depends(_monitoring)]
CurrentPrincipal = Annotated[Principal, Depends(_principal)]
Context = Annotated[ApiContext, Depends(_context)]
BackendsDep = Annotated[Backends, Depends(_backends)]
LlmDep = Annotated[LlmGateway, Depends(_llm)]
Probes = Annotated[tuple[HealthProbe, ...], Depends(_probes)]


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
        str | None, Query(max_length=4096, description="`next_page_token` of the previous page.")
    ] = None,
) -> PageRequest:
    size = page_size or context.default_page_size
    if size > context.max_page_size:
        raise InvalidInput.for_field(
            "page_size", f"must be at most {context.max_page_size}", location="query"
        )
    return PageRequest(size=size, token=page_token or None)


PageParams = Annotated[PageRequest, Depends(_page)]
