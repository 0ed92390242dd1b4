"""`JobRuns` over MLflow: a job's run found by its tag, and its progress."""

from __future__ import annotations

from typing import Any

from mlflow import MlflowClient
from mlflow.entities import ViewType

from app.core.jobs import JobRun

JOB_TAG = "mlservice.job_id"
KIND_TAG = "mlservice.kind"


class MlflowJobRuns:
    """Finds the run a job logs to (the one tagged with its id and a kind).

    Args:
        tracking_uri: the MLflow store.
    """

    def __init__(self, tracking_uri: str) -> None:
        self._client = MlflowClient(tracking_uri)

    def find(self, job_id: str, experiment: str | None) -> JobRun | None:
        """See `JobRuns.find`."""
        if experiment is None:
            ids = [e.experiment_id for e in self._client.search_experiments(max_results=1000)]
        else:
            found = self._client.get_experiment_by_name(experiment)
            ids = [found.experiment_id] if found is not None else []
        if not ids:
            return None
        runs = self._client.search_runs(
            ids,
            filter_string=f"tags.`{JOB_TAG}` = '{job_id}' and tags.`{KIND_TAG}` != ''",
            run_view_type=ViewType.ALL,
            max_results=1,
        )
        if not runs:
            return None
        return self._progress(runs[0])

    def _progress(self, run: Any) -> JobRun:
        tags, metrics = run.data.tags, dict(run.data.metrics)
        unit = tags.get("mlservice.unit", "epochs")
        done = int(metrics.get("epoch", 0))
        if unit == "trials":
            children = self._client.search_runs(
                [run.info.experiment_id],
                filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'",
                max_results=10_000,
            )
            done = sum(1 for c in children if c.info.status != "RUNNING")
        elif unit == "rows":
            done = int(metrics.get("rows_written", 0))
        total = tags.get("mlservice.total")
        version = tags.get("mlservice.registered_version")
        return JobRun(
            run_id=run.info.run_id,
            experiment_id=run.info.experiment_id,
            status=run.info.status,
            metrics=metrics,
            done=done,
            total=int(total) if total and total.isdigit() else None,
            unit=unit,
            registered_model=tags.get("mlservice.registered_model"),
            registered_version=int(version) if version else None,
            error=tags.get("mlservice.error"),
            kind=tags.get(KIND_TAG),
        )
