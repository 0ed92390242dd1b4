"""Jobs on the cluster (training, tuning, batch prediction): states and records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class JobState(StrEnum):
    """Where a job stands."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def terminal(self) -> bool:
        """Whether the job has ended."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.STOPPED)


class JobKind(StrEnum):
    """What a job does (the entry point module under `app.jobs`)."""

    TRAIN = "train"
    TUNE = "tune"
    BATCH_PREDICT = "batch_predict"

    @property
    def module(self) -> str:
        """The job's entry point, `python -m <module>`."""
        return "app.jobs.batch_predict" if self is JobKind.BATCH_PREDICT else "app.jobs.train"


@dataclass(frozen=True)
class JobRecord:
    """A job as the cluster knows it."""

    job_id: str
    state: JobState
    message: str | None
    started_at: datetime | None
    ended_at: datetime | None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobRun:
    """The MLflow run a job logs to, and how far it got."""

    run_id: str
    experiment_id: str
    status: str
    metrics: Mapping[str, float]
    done: int
    total: int | None
    unit: str
    registered_model: str | None
    registered_version: int | None
    error: str | None
    kind: str | None = None


@dataclass(frozen=True)
class JobView:
    """A job: the cluster's record and, once it logs, its MLflow run."""

    record: JobRecord
    kind: str | None
    run: JobRun | None
