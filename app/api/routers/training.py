"""`/training`: submit training, tuning and batch-prediction jobs; follow, read logs, stop."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from app.api.deps import Context, CurrentPrincipal, Jobs
from app.api.problems import problem_responses
from app.api.schemas.training import JobProgress, JobPublic
from app.api.security import GuardedRoute
from app.core.jobs import JobView
from app.jobs.spec import JobSpec

router = APIRouter(prefix="/training", tags=["training"], route_class=GuardedRoute)

JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_\-]{1,64}$", description="The job's id.")]


@router.post(
    "/submit",
    status_code=201,
    response_model=JobPublic,
    responses=problem_responses(404, 422, 429, 503),
)
async def submit(
    spec: Annotated[JobSpec, Body()],
    jobs: Jobs,
    principal: CurrentPrincipal,
    context: Context,
    response: Response,
) -> JobPublic:
    """Submit a training, tuning (`tune`) or batch-prediction (`kind: batch_predict`) job."""
    view = await jobs.submit(spec, principal.name)
    response.headers["Location"] = f"{context.api_base}/training/{view.record.job_id}"
    return public(view, context.mlflow_prefix)


@router.get("", response_model=list[JobPublic], responses=problem_responses(422, 503))
def list_jobs(jobs: Jobs, context: Context) -> list[JobPublic]:
    """The service's jobs, newest first (progress: see each job)."""
    return [public(view, context.mlflow_prefix) for view in jobs.list()]


@router.get("/{job_id}", response_model=JobPublic, responses=problem_responses(404, 422, 503))
def get_job(job_id: JobId, jobs: Jobs, context: Context) -> JobPublic:
    """State, progress (epochs, trials or rows), latest metrics, MLflow run, registered version."""
    return public(jobs.get(job_id), context.mlflow_prefix)


@router.get(
    "/{job_id}/logs",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {}}, "description": "The log (or a stream)."},
        **problem_responses(404, 422, 503),
    },
)
def logs(
    job_id: JobId,
    jobs: Jobs,
    follow: Annotated[bool, Query(description="Stream the log until the job ends.")] = False,
) -> Response:
    """The job's log; `follow=true` streams it as it is written."""
    if follow:
        jobs.get(job_id)  # 404 before the stream starts
        return StreamingResponse(jobs.tail(job_id), media_type="text/plain")
    return PlainTextResponse(jobs.logs(job_id))


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=JobPublic,
    responses=problem_responses(404, 422, 503),
)
def cancel(job_id: JobId, jobs: Jobs, context: Context) -> JobPublic:
    """Stop the job (a job that has ended stays as it is)."""
    return public(jobs.stop(job_id), context.mlflow_prefix)


def public(view: JobView, mlflow_prefix: str) -> JobPublic:
    """Wire form of a job."""
    record, run = view.record, view.run
    progress = JobProgress(done=run.done, total=run.total, unit=run.unit) if run else None
    registered = (
        {"model": run.registered_model, "version": run.registered_version}
        if run and run.registered_version
        else None
    )
    message = _message(record.message, run.error if run else None)
    return JobPublic(
        job_id=record.job_id,
        kind=view.kind,
        state=record.state.value,
        message=message,
        submitted_by=record.metadata.get("submitted_by"),
        started_at=record.started_at,
        ended_at=record.ended_at,
        progress=progress,
        metrics=dict(run.metrics) if run else {},
        mlflow_run_id=run.run_id if run else None,
        mlflow_ui=f"{mlflow_prefix}/#/experiments/{run.experiment_id}/runs/{run.run_id}"
        if run
        else None,
        registered=registered,
    )


def _message(ray_message: str | None, error: str | None, limit: int = 2000) -> str | None:
    """Why a job ended, short: the job's own error first, then Ray's first line; without
    one, the tail of the log excerpt Ray attaches (up to 20,000 characters)."""
    if not ray_message:
        return error
    first, _, excerpt = ray_message.partition("\n")
    if error:
        return f"{error} ({first.strip()})"[:limit]
    return f"{first.strip()} ... {excerpt[-limit:]}" if excerpt else first[:limit]
