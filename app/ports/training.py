"""Jobs on the cluster (training, tuning, batch prediction) and their MLflow runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from app.core.jobs import JobRecord, JobRun, JobView
from app.jobs.spec import BatchPredictSpec, TrainingSpec


class TrainingLauncher(Protocol):
    """Jobs on the cluster (Ray's job submission)."""

    def submit(
        self, job_id: str, entrypoint: str, metadata: Mapping[str, str], env: Mapping[str, str]
    ) -> str:
        """Start a job running `entrypoint`; its id."""
        ...

    def get(self, job_id: str) -> JobRecord:
        """A job. Raises NotFound (`job_not_found`)."""
        ...

    def list(self) -> list[JobRecord]:
        """Every job the cluster knows, newest first."""
        ...

    def logs(self, job_id: str) -> str:
        """A job's log so far. Raises NotFound (`job_not_found`)."""
        ...

    def tail(self, job_id: str) -> AsyncIterator[str]:
        """A job's log as it is written, until the job ends."""
        ...

    def stop(self, job_id: str) -> bool:
        """Ask a job to stop; False if it had already ended."""
        ...


class JobRuns(Protocol):
    """The MLflow runs of jobs."""

    def find(self, job_id: str, experiment: str | None) -> JobRun | None:
        """The run a job logs to (None until it has started one); without the experiment
        (a job submitted with `ray job submit`), searched in every experiment."""
        ...


class JobSubmitter(Protocol):
    """Submits jobs after checking them (the training use case, for the monitor's
    retraining)."""

    async def submit(self, spec: TrainingSpec | BatchPredictSpec, actor: str) -> JobView:
        """Check the spec, then submit it. Raises InvalidInput for a spec the cluster
        cannot run."""
        ...
