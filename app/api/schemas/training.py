"""Wire models of jobs: their state, progress, MLflow run and registered version. The
request body is the job contract itself (`app.jobs.spec`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class JobSubmitted(BaseModel):
    """A submitted job."""

    job_id: str
    kind: str
    links: dict[str, str]


class JobProgress(BaseModel):
    """How far a job is."""

    done: int
    total: int | None
    unit: str = Field(description="epochs, trials or rows.")


class JobPublic(BaseModel):
    """A job's state, progress, latest metrics, MLflow run and registered version."""

    job_id: str
    kind: str | None
    state: str = Field(description="pending, running, succeeded, failed or stopped.")
    message: str | None
    submitted_by: str | None
    started_at: datetime | None
    ended_at: datetime | None
    progress: JobProgress | None
    metrics: dict[str, float]
    mlflow_run_id: str | None
    mlflow_ui: str | None
    registered: dict[str, Any] | None
