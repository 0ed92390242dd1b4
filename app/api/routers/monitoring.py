"""Monitoring: alerts, a model's live view and policy, evaluation on demand, the report."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Response
from fastapi.responses import HTMLResponse

from app.api.deps import MonitoringDep, PageParams, Registry
from app.api.problems import problem_responses
from app.api.routers.models import ModelId
from app.api.schemas.common import Page
from app.api.schemas.monitoring import (
    AlertPublic,
    DriftOut,
    ModelMonitoring,
    MonitoringPolicyBody,
    MonitoringPolicyPublic,
    ReportFormat,
    VariantMonitoring,
)
from app.api.security import GuardedRoute
from app.core.monitoring import AlertState
from app.core.paging import query_fingerprint, seal, unseal_offset

router = APIRouter(tags=["monitoring"], route_class=GuardedRoute)


@router.get(
    "/monitoring/alerts", response_model=Page[AlertPublic], responses=problem_responses(422, 503)
)
async def list_alerts(
    monitoring: MonitoringDep,
    page: PageParams,
    model: Annotated[str | None, Query(max_length=128, description="Only this model's.")] = None,
    state: Annotated[AlertState | None, Query(description="open or resolved.")] = None,
) -> Page[AlertPublic]:
    """Drift alerts, newest first."""
    fingerprint = query_fingerprint(["alerts", model or "", state or ""])
    offset = unseal_offset(page.token, fingerprint)
    found = await monitoring.alerts(model, state, offset, page.size + 1)
    chunk = found[: page.size]
    more = len(found) > page.size
    return Page[AlertPublic](
        items=[AlertPublic.of(a) for a in chunk],
        next_page_token=seal(str(offset + page.size), fingerprint) if more else None,
    )


@router.get(
    "/models/{model_id}/monitoring",
    response_model=ModelMonitoring,
    responses=problem_responses(404, 422, 503),
)
async def model_monitoring(
    model_id: ModelId, monitoring: MonitoringDep, registry: Registry
) -> ModelMonitoring:
    """Per variant: requests, errors, rate, latency percentiles, quality from feedback; per
    version: drift per feature (and of the predictions) with the window it covers."""
    await registry.get_model(model_id)  # 404 for a model the registry does not know
    policy, own = await monitoring.policy(model_id)
    variants = await monitoring.variants(model_id, policy)
    drift = await monitoring.drift(model_id)
    alerts = await monitoring.alerts(model_id, AlertState.OPEN, 0, 100)
    return ModelMonitoring(
        model=model_id,
        policy=MonitoringPolicyPublic.of(model_id, policy, own),
        variants=[VariantMonitoring(**v) for v in variants],
        drift=[DriftOut.of(version, body) for version, body in sorted(drift.items())],
        open_alerts=[AlertPublic.of(a) for a in alerts],
    )


@router.get(
    "/models/{model_id}/monitoring/policy",
    response_model=MonitoringPolicyPublic,
    responses=problem_responses(404, 422, 503),
)
async def get_policy(
    model_id: ModelId, monitoring: MonitoringDep, registry: Registry
) -> MonitoringPolicyPublic:
    """The model's monitoring policy (the service's defaults until one is set)."""
    await registry.get_model(model_id)
    policy, own = await monitoring.policy(model_id)
    return MonitoringPolicyPublic.of(model_id, policy, own)


@router.put(
    "/models/{model_id}/monitoring/policy",
    response_model=MonitoringPolicyPublic,
    responses=problem_responses(404, 422, 503),
)
async def set_policy(
    model_id: ModelId,
    body: Annotated[MonitoringPolicyBody, Body()],
    monitoring: MonitoringDep,
    registry: Registry,
) -> MonitoringPolicyPublic:
    """Set the model's window, thresholds, cooldown, sample rate, webhook and retraining."""
    await registry.get_model(model_id)
    policy = await monitoring.set_policy(model_id, body.to_domain())
    return MonitoringPolicyPublic.of(model_id, policy, True)


@router.post(
    "/models/{model_id}/monitoring/evaluate",
    response_model=list[DriftOut],
    responses=problem_responses(404, 422, 503),
)
async def evaluate(
    model_id: ModelId, monitoring: MonitoringDep, registry: Registry
) -> list[DriftOut]:
    """Evaluate drift now (the monitor also does every `evaluate_every_s`); alerts,
    webhooks and retraining follow as they would."""
    await registry.get_model(model_id)
    found = await monitoring.evaluate(model_id)
    return [DriftOut.of(version, body) for version, body in sorted(found.items())]


@router.get(
    "/models/{model_id}/monitoring/report",
    response_class=Response,
    responses={
        200: {
            "content": {"image/png": {}, "text/html": {}},
            "description": "Reference vs current histograms per feature.",
        },
        **problem_responses(404, 422, 503),
    },
)
async def report(
    model_id: ModelId,
    monitoring: MonitoringDep,
    version: Annotated[int, Query(ge=1, description="The version evaluated.")],
    format: Annotated[ReportFormat, Query(description="png or html.")] = "html",
) -> Response:
    """The latest drift evaluation of a version as a picture (PNG) or a page (HTML)."""
    drawn = await monitoring.report(model_id, version, format)
    if format == "png":
        return Response(drawn, media_type="image/png")
    return HTMLResponse(drawn)
