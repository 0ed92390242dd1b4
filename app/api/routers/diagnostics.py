"""`/models/{id}/diagnose`: findings about a model, explained by an assistant LLM."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from app.api.deps import DiagnosticsDep
from app.api.problems import problem_responses
from app.api.routers.models import ModelId
from app.api.schemas.diagnostics import DiagnoseRequest, DiagnosisPublic
from app.api.security import GuardedRoute, requires
from app.core.access import Role

router = APIRouter(tags=["diagnostics"], route_class=GuardedRoute)


@router.post(
    "/models/{model_id}/diagnose",
    response_model=DiagnosisPublic,
    responses=problem_responses(404, 422, 503),
    openapi_extra=requires(Role.VIEWER),
)
async def diagnose(
    model_id: ModelId,
    diagnostics: DiagnosticsDep,
    body: Annotated[DiagnoseRequest | None, Body()] = None,
) -> DiagnosisPublic:
    """What is wrong with a model and since when: findings, and the assistant's answer."""
    request = body or DiagnoseRequest()
    diagnosis = await diagnostics.diagnose(
        model_id, request.version, request.window_s, request.question
    )
    return DiagnosisPublic.of(diagnosis)
