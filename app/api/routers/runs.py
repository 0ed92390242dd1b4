"""`/experiments/{id}/runs`: log, search, read, update and compare runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import StringConstraints

from app.api.deps import (
    Context,
    CurrentPrincipal,
    PageParams,
    Tracker,
)
from app.api.idempotency import IdempotencyKey, answer_creation, request_digest
from app.api.problems import problem_responses
from app.api.routers.experiments import ExperimentId
from app.api.schemas.common import Page, to_datetime
from app.api.schemas.comparison import RunComparisonPublic
from app.api.schemas.runs import (
    MetricHistory,
    MetricValue,
    RunCreate,
    RunPatch,
    RunPublic,
)
from app.api.security import GuardedRoute
from app.core.comparison import compare_runs
from app.core.paging import query_fingerprint, seal, unseal
from app.core.tracking import RunQuery
from app.errors import InvalidInput

router = APIRouter(
    prefix="/experiments/{experiment_id}/runs", tags=["runs"], route_class=GuardedRoute
)

RunId = Annotated[
    str,
    Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,255}$", description="MLflow run id."),
]
MetricKey = Annotated[str, Path(min_length=1, max_length=250, description="Metric name.")]
MAX_COMPARED_RUNS = 20


@router.post(
    "",
    status_code=201,
    response_model=RunPublic,
    responses={
        200: {
            "description": "A replayed retry (same Idempotency-Key and body).",
            "model": RunPublic,
        },
        **problem_responses(404, 409, 413, 422, 503),
    },
)
def log_run(
    experiment_id: ExperimentId,
    body: RunCreate,
    tracker: Tracker,
    principal: CurrentPrincipal,
    context: Context,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> RunPublic:
    """Log a run with params, metrics (steps, timestamps), tags and dataset inputs."""
    run, created = tracker.log_run(
        experiment_id,
        body.to_domain(principal.name),
        idempotency_key,
        request_digest(idempotency_key, body, experiment_id),
    )
    public = RunPublic.of(run, context.api_base, context.mlflow_prefix)
    answer_creation(response, public.links.self, created)
    return public


@router.get("", response_model=Page[RunPublic], responses=problem_responses(404, 422, 503))
def search_runs(
    experiment_id: ExperimentId,
    tracker: Tracker,
    context: Context,
    page: PageParams,
    filter: Annotated[
        str,
        Query(
            max_length=1000,
            description="MLflow filter, e.g. `metrics.accuracy > 0.9 and params.lr = '0.01'`.",
            examples=["metrics.accuracy > 0.9"],
        ),
    ] = "",
    order_by: Annotated[
        list[Annotated[str, StringConstraints(max_length=200)]] | None,
        Query(
            max_length=10,
            description="Repeatable; e.g. `metrics.accuracy DESC`. Default: newest first.",
            examples=[["metrics.accuracy DESC"]],
        ),
    ] = None,
) -> Page[RunPublic]:
    """Search an experiment's runs with an MLflow filter and ordering."""
    query = RunQuery(filter=filter, order_by=tuple(order_by or ()))
    fingerprint = query_fingerprint(["runs", experiment_id, query.filter, *query.order_by])
    result = tracker.search_runs(experiment_id, query, page.size, unseal(page.token, fingerprint))
    return Page[RunPublic](
        items=[RunPublic.of(r, context.api_base, context.mlflow_prefix) for r in result.items],
        next_page_token=seal(result.next_token, fingerprint),
    )


MetricName = Annotated[str, StringConstraints(max_length=250)]


@router.get(
    "/compare", response_model=RunComparisonPublic, responses=problem_responses(404, 422, 503)
)
def compare(
    experiment_id: ExperimentId,
    tracker: Tracker,
    context: Context,
    run_ids: Annotated[
        list[Annotated[str, StringConstraints(max_length=700)]],
        Query(
            min_length=1,
            max_length=20,
            description="Runs to compare, repeated or comma-separated (2 to 20).",
        ),
    ],
    minimize: Annotated[
        list[MetricName] | None,
        Query(max_length=20, description="Metrics where lower is better (overrides)."),
    ] = None,
    maximize: Annotated[
        list[MetricName] | None,
        Query(max_length=20, description="Metrics where higher is better (overrides)."),
    ] = None,
) -> RunComparisonPublic:
    """Compare runs side by side: params and metrics aligned, differences and bests marked."""
    ids = _unique_ids(run_ids)
    runs = [tracker.get_run(experiment_id, run_id) for run_id in ids]
    comparison = compare_runs(runs, _split(minimize), _split(maximize))
    public = [RunPublic.of(r, context.api_base, context.mlflow_prefix) for r in runs]
    return RunComparisonPublic.of(comparison, public)


@router.get("/{run_id}", response_model=RunPublic, responses=problem_responses(404, 422, 503))
def get_run(
    experiment_id: ExperimentId, run_id: RunId, tracker: Tracker, context: Context
) -> RunPublic:
    """Read one run."""
    run = tracker.get_run(experiment_id, run_id)
    return RunPublic.of(run, context.api_base, context.mlflow_prefix)


@router.patch(
    "/{run_id}", response_model=RunPublic, responses=problem_responses(404, 409, 413, 422, 503)
)
def update_run(
    experiment_id: ExperimentId,
    run_id: RunId,
    body: RunPatch,
    tracker: Tracker,
    context: Context,
) -> RunPublic:
    """Add params, metrics and tags to an ongoing run, and optionally end it."""
    run = tracker.update_run(experiment_id, run_id, body.to_domain())
    return RunPublic.of(run, context.api_base, context.mlflow_prefix)


@router.get(
    "/{run_id}/metrics/{key}",
    response_model=MetricHistory,
    responses=problem_responses(404, 422, 503),
)
def metric_history(
    experiment_id: ExperimentId, run_id: RunId, key: MetricKey, tracker: Tracker
) -> MetricHistory:
    """Every logged value of one metric of a run, by step."""
    points = tracker.metric_history(experiment_id, run_id, key)
    return MetricHistory(
        run_id=run_id,
        key=key,
        points=[
            MetricValue(value=p.value, step=p.step, timestamp=to_datetime(p.timestamp_ms))
            for p in points
        ],
    )


def _split(values: list[str] | None) -> tuple[str, ...]:
    return tuple(part.strip() for v in values or () for part in v.split(",") if part.strip())


def _unique_ids(run_ids: list[str]) -> tuple[str, ...]:
    ids = tuple(dict.fromkeys(_split(run_ids)))
    if not 2 <= len(ids) <= MAX_COMPARED_RUNS:
        raise InvalidInput.for_field(
            "run_ids", f"give 2 to {MAX_COMPARED_RUNS} distinct run ids", location="query"
        )
    return ids
