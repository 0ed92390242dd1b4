"""Experiment tracking as domain values: experiments, runs, metrics, dataset inputs.

These are the shapes the API converts its wire models into once, and the shapes the
`ExperimentTracker` port returns; nothing here knows MLflow.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

from app.errors import Conflict, ErrorCode

T = TypeVar("T")

# Tag keys the service owns; callers may not set them.
RESERVED_TAG_PREFIX = "mlservice."
IDEMPOTENCY_KEY_TAG = "mlservice.idempotency_key"
REQUEST_DIGEST_TAG = "mlservice.request_sha256"
CREATED_BY_TAG = "mlservice.created_by"
USER_TAG = "mlflow.user"
RUN_NAME_TAG = "mlflow.runName"
DESCRIPTION_TAG = "mlflow.note.content"
DATASET_CONTEXT_TAG = "mlflow.data.context"
# The run's evaluation metrics and their goals, as JSON (`{"val_loss": "minimize"}`): the
# metrics the staging gate compares (training jobs set it; a notebook run may too).
EVALUATION_TAG = "mlservice.evaluation_metrics"


class RunStatus(StrEnum):
    """A run's lifecycle, as MLflow records it."""

    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @property
    def terminal(self) -> bool:
        """Whether the run has ended; an ended run takes no more data."""
        return self in _TERMINAL


_TERMINAL = frozenset({RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED})
_RUN_TRANSITIONS: Mapping[RunStatus, frozenset[RunStatus]] = {
    RunStatus.SCHEDULED: frozenset({RunStatus.RUNNING, *_TERMINAL}),
    RunStatus.RUNNING: frozenset({RunStatus.RUNNING, *_TERMINAL}),
    RunStatus.FINISHED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.KILLED: frozenset(),
}


def check_run_transition(run_id: str, current: RunStatus, target: RunStatus | None) -> None:
    """Refuse changes to an ended run (new data, or a status change).

    Raises:
        Conflict: the run has ended, or `current -> target` is not a legal move.
    """
    if current.terminal:
        raise Conflict(
            ErrorCode.RUN_ALREADY_TERMINATED,
            f"Run {run_id} has ended ({current}); it takes no more data.",
            run_id=run_id,
            status=current.value,
        )
    if target is not None and target not in _RUN_TRANSITIONS[current]:
        raise Conflict(
            ErrorCode.RUN_ALREADY_TERMINATED,
            f"Run {run_id} cannot move from {current} to {target}.",
            run_id=run_id,
            status=current.value,
        )


@dataclass(frozen=True)
class MetricPoint:
    """One logged metric value."""

    key: str
    value: float
    step: int
    timestamp_ms: int


@dataclass(frozen=True)
class DatasetRef:
    """A dataset a run consumed, recorded for lineage (digest, source and schema)."""

    name: str
    digest: str
    source_type: str
    source: str
    schema: str | None = None
    profile: str | None = None
    context: str | None = None


@dataclass(frozen=True)
class Experiment:
    """A named group of runs."""

    id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    tags: Mapping[str, str]
    created_ms: int | None
    updated_ms: int | None

    @property
    def description(self) -> str | None:
        """The experiment's free-text description."""
        return self.tags.get(DESCRIPTION_TAG)


@dataclass(frozen=True)
class NewExperiment:
    """What a caller asks to create."""

    name: str
    tags: Mapping[str, str] = field(default_factory=dict)
    description: str | None = None
    created_by: str = ""


@dataclass(frozen=True)
class RunRecord:
    """A run to log in one go: finished, or ongoing (status RUNNING)."""

    name: str | None
    status: RunStatus
    start_ms: int
    end_ms: int | None
    params: Mapping[str, str]
    metrics: tuple[MetricPoint, ...]
    tags: Mapping[str, str]
    datasets: tuple[DatasetRef, ...]
    created_by: str


@dataclass(frozen=True)
class RunUpdate:
    """More data for an ongoing run, and optionally its end."""

    status: RunStatus | None
    end_ms: int | None
    params: Mapping[str, str]
    metrics: tuple[MetricPoint, ...]
    tags: Mapping[str, str]


@dataclass(frozen=True)
class Run:
    """A run as stored: its latest metric values and every param, tag and dataset."""

    id: str
    experiment_id: str
    name: str | None
    status: RunStatus
    start_ms: int | None
    end_ms: int | None
    params: Mapping[str, str]
    metrics: Mapping[str, MetricPoint]
    tags: Mapping[str, str]
    datasets: tuple[DatasetRef, ...]
    artifact_uri: str
    user: str | None


@dataclass(frozen=True)
class RunQuery:
    """A search over an experiment's runs, in MLflow's filter and order syntax."""

    filter: str = ""
    order_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing, and the backend's token for the next one (None at the end)."""

    items: tuple[T, ...]
    next_token: str | None


MAX_KEY_LENGTH = 250
_KEY_CHARS = re.compile(r"^[/\w.\- :]+$")


def key_problem(key: str) -> str | None:
    """Why `key` is not a valid param, metric or tag name (MLflow's rules), or None if it is.

    Keys may name files in the artifact store, so they must not resolve to another path.
    """
    if not key:
        return "must not be empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"must be at most {MAX_KEY_LENGTH} characters"
    if not _KEY_CHARS.match(key):
        return "may only contain letters, digits, _ - . : / and spaces"
    normal = posixpath.normpath(key)
    if normal != key or normal == "." or normal.startswith(("..", "/")):
        return f"must not resolve to another path (it resolves to {normal!r})"
    return None
