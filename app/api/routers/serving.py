"""Deployments (`/models/{id}/deploy`, `/deployment`), `/predict` and `/feedback`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse

from app.api.deps import CurrentPrincipal, DeploymentsDep, Predictions
from app.api.problems import problem_responses, request_id_of
from app.api.schemas.serving import (
    DeploymentPublic,
    DeployRequest,
    FeedbackRequest,
    FeedbackResponse,
    FeedbackStatus,
    PredictRequest,
    PredictResponse,
)
from app.api.security import GuardedRoute, requires
from app.core.access import Role
from app.jobs.spec import MODEL_NAME_PATTERN

router = APIRouter(tags=["serving"], route_class=GuardedRoute)

ModelId = Annotated[str, Path(pattern=MODEL_NAME_PATTERN, description="Registered model name.")]

_DEPLOY_409: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "`rollout_in_progress`: a canary is rolling out. `nothing_to_compare`: "
        "canary and shadow need a current deployment. `feature_contract_broken`: the "
        "feature service a version was trained on is gone or changed.",
        **problem_responses(409)[409],
    }
}


@router.post(
    "/models/{model_id}/deploy",
    response_model=DeploymentPublic,
    responses={**problem_responses(404, 422, 503), **_DEPLOY_409},
)
async def deploy(
    model_id: ModelId,
    body: DeployRequest,
    deployments: DeploymentsDep,
    principal: CurrentPrincipal,
) -> DeploymentPublic:
    """Deploy versions with a strategy: replace, canary, ab or shadow, each version on a
    backend: `ray` (the model server), `triton` (Triton Inference Server: the version is
    exported to TorchScript and loaded before traffic moves; 422 on `backend` when it
    cannot be) or `vllm` (an LLM version: its vLLM engine is started first, which can take
    minutes; it then answers `/llm/v1/...`). A version trained on a feature service is
    refused (409 `feature_contract_broken`) when the service no longer exists or its
    schema changed."""
    view = await deployments.deploy(model_id, body.to_domain(), principal.name)
    return DeploymentPublic.of(view)


@router.get(
    "/models/{model_id}/deployment",
    response_model=DeploymentPublic,
    responses=problem_responses(404, 422, 503),
)
async def deployment(model_id: ModelId, deployments: DeploymentsDep) -> DeploymentPublic:
    """The routing table, each variant's live statistics, the rollout and A/B verdicts."""
    return DeploymentPublic.of(await deployments.view(model_id))


@router.delete(
    "/models/{model_id}/deployment",
    status_code=204,
    responses=problem_responses(404, 422, 503),
)
async def undeploy(
    model_id: ModelId, deployments: DeploymentsDep, principal: CurrentPrincipal
) -> Response:
    """Undeploy the model (stops a rollout in progress, and its LLM engines)."""
    await deployments.undeploy(model_id, principal.name)
    return Response(status_code=204)


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=problem_responses(404, 413, 422, 502, 503),
    openapi_extra=requires(Role.VIEWER),
)
async def predict(body: PredictRequest, predictor: Predictions, request: Request) -> Response:
    """Predict with a deployed model (inference is a read: the viewer role suffices)."""
    result = await predictor.predict(
        body.model, body.inputs, body.request_key, request_id_of(request), body.entities
    )
    # The hot path: plain JSON, without validating the response model once more.
    return JSONResponse(
        {
            "request_id": result.request_id,
            "model": result.model,
            "version": result.version,
            "variant": result.variant,
            "predictions": result.predictions,
        }
    )


@router.post(
    "/feedback",
    status_code=202,
    response_model=FeedbackResponse,
    responses=problem_responses(422, 503),
)
async def feedback(body: FeedbackRequest, deployments: DeploymentsDep) -> FeedbackResponse:
    """Attach ground truth (a label or an outcome) to earlier predictions, by request_id."""
    items = [item.to_domain() for item in body.items]
    statuses = await deployments.feedback(items)
    return FeedbackResponse(
        results=[
            FeedbackStatus(request_id=item.request_id, status=status)
            for item, status in zip(items, statuses, strict=True)
        ]
    )
