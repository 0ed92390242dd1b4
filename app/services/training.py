"""Training, tuning and batch-prediction jobs as the API offers them: checked before they
are submitted, then followed through Ray's job API and their MLflow runs."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import shlex
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

from app.core.jobs import JobKind, JobState, JobView
from app.core.search_space import parse
from app.errors import ErrorCode, FieldError, InvalidInput, TooManyRequests
from app.jobs.spec import BUILT_IN_TRAINERS, BatchPredictSpec, TrainingSpec
from app.ports.registry import ModelRegistry
from app.ports.training import JobRuns, TrainingLauncher
from app.services.features import Features

log = logging.getLogger(__name__)

BATCH_EXPERIMENT = "batch-predictions"
ACTIVE_STATES = frozenset({JobState.PENDING, JobState.RUNNING})


class TrainingJobs:
    """Submits and follows jobs.

    Args:
        launcher: Ray's job submission.
        runs: the jobs' MLflow runs.
        registry: checks the model of a batch prediction.
        resources: the cluster's total resources (`ray.cluster_resources`).
        python: the interpreter jobs run with (the service's own environment).
        env: variables every job gets (where the registry actor is, the code version).
        workdir: relative dataset paths are resolved against it.
        features: checks the feature service of a training set.
        max_active: jobs pending or running at once; submissions beyond are refused.
    """

    def __init__(
        self,
        launcher: TrainingLauncher,
        runs: JobRuns,
        registry: ModelRegistry,
        resources: Callable[[], Mapping[str, float]],
        python: str,
        env: Mapping[str, str],
        workdir: Path,
        features: Features | None = None,
        max_active: int = 8,
    ) -> None:
        self._launcher = launcher
        self._max_active = max_active
        self._submitting = asyncio.Lock()  # this replica's count-then-submit, one at a time
        self._runs = runs
        self._registry = registry
        self._resources = resources
        self._python = python
        self._env = dict(env)
        self._workdir = workdir
        self._features = features

    async def submit(self, spec: TrainingSpec | BatchPredictSpec, actor: str) -> JobView:
        """Check the spec, then submit it.

        Raises:
            InvalidInput: unknown trainer, a search space that does not parse, a missing
                dataset, more resources than the cluster has, an unknown model version.
            TooManyRequests: `max_active` jobs are already pending or running.
        """
        if isinstance(spec, TrainingSpec):
            spec = await asyncio.to_thread(self._check_training, spec)
            kind = JobKind.TUNE if spec.tune else JobKind.TRAIN
            metadata = {
                "kind": kind.value,
                "experiment": spec.experiment,
                "model": spec.registration.model if spec.registration else "",
            }
        else:
            spec = await self._check_batch(spec)
            kind = JobKind.BATCH_PREDICT
            metadata = {"kind": kind.value, "experiment": BATCH_EXPERIMENT, "model": spec.model}
        job_id = f"{kind.value.replace('_', '-')}-{uuid.uuid4().hex[:12]}"
        body = json.dumps(spec.model_dump(mode="json", by_alias=True))
        entrypoint = f"{shlex.quote(self._python)} -m {kind.module} --spec-json {shlex.quote(body)}"
        async with self._submitting:
            active = await asyncio.to_thread(self._active)
            if active >= self._max_active:
                raise TooManyRequests(
                    ErrorCode.TOO_MANY_JOBS,
                    f"{active} jobs are pending or running (the limit is {self._max_active}); "
                    "retry when one ends, or cancel one.",
                    active=active,
                    limit=self._max_active,
                )
            await asyncio.to_thread(  # an HTTP call to the cluster, retried while it starts
                self._launcher.submit,
                job_id,
                entrypoint,
                {**metadata, "submitted_by": actor},
                self._env,
            )
        log.info("%s submitted %s job %s", actor, kind.value, job_id)
        return await asyncio.to_thread(self.get, job_id)

    def _active(self) -> int:
        """The service's jobs pending or running now."""
        kinds = {k.value for k in JobKind}
        return sum(
            1
            for record in self._launcher.list()
            if record.state in ACTIVE_STATES and record.metadata.get("kind") in kinds
        )

    def get(self, job_id: str) -> JobView:
        """A job with its progress (NotFound for an unknown id)."""
        record = self._launcher.get(job_id)
        experiment = record.metadata.get("experiment") or None
        run = self._runs.find(job_id, experiment)
        kind = record.metadata.get("kind") or (run.kind if run else None)
        return JobView(record, kind, run)

    def list(self, limit: int = 100) -> list[JobView]:
        """The service's jobs, newest first (without their runs, for speed)."""
        return [
            JobView(r, r.metadata.get("kind"), None)
            for r in self._launcher.list()
            if r.metadata.get("kind") in {k.value for k in JobKind}
        ][:limit]

    def logs(self, job_id: str) -> str:
        """The job's log so far."""
        return self._launcher.logs(job_id)

    def tail(self, job_id: str) -> AsyncIterator[str]:
        """The job's log as it is written."""
        return self._launcher.tail(job_id)

    def stop(self, job_id: str) -> JobView:
        """Ask the job to stop."""
        self._launcher.stop(job_id)
        return self.get(job_id)

    def _check_training(self, spec: TrainingSpec) -> TrainingSpec:
        _check_trainer(spec.trainer)
        if spec.tune is not None:
            parse(spec.tune.search_space, spec.tune.searcher)
        dataset = spec.dataset
        if dataset.path is not None:
            resolved = self._local(dataset.path, "dataset.path")
            spec = spec.model_copy(
                update={"dataset": dataset.model_copy(update={"path": resolved})}
            )
        if dataset.feature_service is not None and dataset.entities is not None:
            if self._features is not None and (
                self._features.catalog().service(dataset.feature_service) is None
            ):
                raise InvalidInput.for_field(
                    "dataset.feature_service",
                    f"no feature service {dataset.feature_service!r} (see GET /features)",
                )
            resolved = self._local(dataset.entities, "dataset.entities")
            spec = spec.model_copy(
                update={"dataset": dataset.model_copy(update={"entities": resolved})}
            )
        self._check_resources(spec)
        return spec

    async def _check_batch(self, spec: BatchPredictSpec) -> BatchPredictSpec:
        view = await self._registry.get_model(spec.model)
        versions = {v.version: v for v in view.versions}
        if spec.version is not None and spec.version not in versions:
            raise InvalidInput.for_field("version", f"{spec.model!r} has no version {spec.version}")
        if spec.stage is not None and not any(
            v.stage.value == spec.stage for v in versions.values()
        ):
            raise InvalidInput.for_field(
                "stage", f"no version of {spec.model!r} is in {spec.stage}"
            )
        cpus = self._resources().get("CPU", 0)
        if spec.cpus_per_replica > cpus:
            raise InvalidInput(
                ErrorCode.INSUFFICIENT_RESOURCES,
                f"a model replica needs {spec.cpus_per_replica:g} CPUs; the cluster has {cpus:g}",
                field_errors=_field("cpus_per_replica", "more CPUs than the cluster"),
            )
        return spec.model_copy(
            update={
                "input": self._local(spec.input, "input"),
                "output": self._local(spec.output, "output", must_exist=False),
            }
        )

    def _local(self, path: str, field: str, *, must_exist: bool = True) -> str:
        """`path` as the job takes it: an `s3://` URI as given, else resolved against the
        working directory, which it may not leave (`..`, an absolute path or a symbolic
        link elsewhere would let a caller read or write any file the cluster can)."""
        if "://" in path:
            if not path.startswith("s3://"):
                raise InvalidInput.for_field(
                    field, "must be a path under the service's working directory or s3://..."
                )
            return path
        root = self._workdir.resolve()
        resolved = (root / path).resolve()
        if not resolved.is_relative_to(root):
            raise InvalidInput.for_field(
                field, f"must stay inside the service's working directory ({root})"
            )
        if must_exist and not resolved.exists():
            raise InvalidInput.for_field(field, f"{resolved} does not exist")
        return str(resolved)

    def _check_resources(self, spec: TrainingSpec) -> None:
        total = self._resources()
        scaling = spec.scaling
        if spec.tune is None:
            cpus = scaling.num_workers * scaling.cpus_per_worker
            if cpus > total.get("CPU", 0):
                raise InvalidInput(
                    ErrorCode.INSUFFICIENT_RESOURCES,
                    f"scaling: {scaling.num_workers} workers need {cpus:g} CPUs; the cluster "
                    f"has {total.get('CPU', 0):g}",
                    field_errors=_field("scaling.num_workers", "more CPUs than the cluster"),
                )
        elif spec.tune.cpus_per_trial > total.get("CPU", 0):
            raise InvalidInput(
                ErrorCode.INSUFFICIENT_RESOURCES,
                f"tune: a trial needs {spec.tune.cpus_per_trial:g} CPUs; the cluster has "
                f"{total.get('CPU', 0):g}",
                field_errors=_field("tune.cpus_per_trial", "more CPUs than the cluster"),
            )
        if scaling.use_gpu:
            gpus = scaling.num_workers * scaling.gpus_per_worker
            if gpus > total.get("GPU", 0):
                raise InvalidInput(
                    ErrorCode.INSUFFICIENT_RESOURCES,
                    f"scaling: {scaling.num_workers} workers need {gpus:g} GPUs; the cluster "
                    f"has {total.get('GPU', 0):g}",
                    field_errors=_field("scaling.use_gpu", "more GPUs than the cluster"),
                )


def _check_trainer(trainer: str) -> None:
    if trainer in BUILT_IN_TRAINERS:
        return
    if ":" not in trainer:
        raise InvalidInput.for_field(
            "trainer",
            f"unknown trainer {trainer!r}: use {', '.join(BUILT_IN_TRAINERS)} or "
            "package.module:function",
        )
    module = trainer.partition(":")[0]
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise InvalidInput.for_field(
            "trainer", f"cannot import {module!r}; install it in the cluster's environment"
        )


def _field(name: str, message: str) -> tuple[FieldError, ...]:
    return (FieldError(name, message),)


def code_version(directory: Path) -> str:
    """The git commit of the service's code (passed to jobs for lineage)."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
