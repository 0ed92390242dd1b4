"""`/experiments`: create, list and read experiments."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from app.api.deps import (
    Context,
    CurrentPrincipal,
    PageParams,
    Tracker,
)
from app.api.idempotency import IdempotencyKey, answer_creation, request_digest
from app.api.problems import problem_responses
from app.api.schemas.common import Page
from app.api.schemas.experiments import ExperimentCreate, ExperimentPublic
from app.api.security import GuardedRoute
from app.core.paging import query_fingerprint, seal, unseal

router = APIRouter(prefix="/experiments", tags=["experiments"], route_class=GuardedRoute)

ExperimentId = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$",
        description="MLflow experiment id.",
        examples=["1"],
    ),
]


@router.post(
    "",
    status_code=201,
    response_model=ExperimentPublic,
    responses={
        200: {
            "description": "A replayed retry (same Idempotency-Key and body).",
            "model": ExperimentPublic,
        },
        **problem_responses(409, 413, 422, 503),
    },
)
def create_experiment(
    body: ExperimentCreate,
    tracker: Tracker,
    principal: CurrentPrincipal,
    context: Context,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> ExperimentPublic:
    """Create an experiment."""
    experiment, created = tracker.create_experiment(
        body.to_domain(principal.name), idempotency_key, request_digest(idempotency_key, body)
    )
    public = ExperimentPublic.of(experiment, context.api_base, context.mlflow_prefix)
    answer_creation(response, public.links.self, created)
    return public


@router.get("", response_model=Page[ExperimentPublic], responses=problem_responses(422, 503))
def list_experiments(
    tracker: Tracker,
    context: Context,
    page: PageParams,
    name: Annotated[
        str | None,
        Query(max_length=500, description="Case-insensitive substring of the name."),
    ] = None,
) -> Page[ExperimentPublic]:
    """List active experiments, newest first."""
    fingerprint = query_fingerprint(["experiments", name or ""])
    result = tracker.list_experiments(name, page.size, unseal(page.token, fingerprint))
    return Page[ExperimentPublic](
        items=[
            ExperimentPublic.of(e, context.api_base, context.mlflow_prefix) for e in result.items
        ],
        next_page_token=seal(result.next_token, fingerprint),
    )


@router.get(
    "/{experiment_id}", response_model=ExperimentPublic, responses=problem_responses(404, 422, 503)
)
def get_experiment(
    experiment_id: ExperimentId, tracker: Tracker, context: Context
) -> ExperimentPublic:
    """Read one experiment."""
    experiment = tracker.get_experiment(experiment_id)
    return ExperimentPublic.of(experiment, context.api_base, context.mlflow_prefix)
