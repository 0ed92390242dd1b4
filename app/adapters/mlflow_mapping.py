"""MLflow entities as domain values."""

from __future__ import annotations

from typing import Any

from mlflow.entities import Metric

from app.core.tracking import (
    DATASET_CONTEXT_TAG,
    DatasetRef,
    Experiment,
    MetricPoint,
    Run,
    RunStatus,
)


def experiment_of(e: Any) -> Experiment:
    """A domain experiment from MLflow's `Experiment`."""
    return Experiment(
        id=str(e.experiment_id),
        name=e.name,
        artifact_location=e.artifact_location,
        lifecycle_stage=e.lifecycle_stage,
        tags=dict(e.tags),
        created_ms=e.creation_time,
        updated_ms=e.last_update_time,
    )


def run_of(r: Any) -> Run:
    """A domain run from MLflow's `Run` (latest value of each metric)."""
    metric_objs = getattr(r.data, "_metric_objs", None) or [
        Metric(k, v, 0, 0) for k, v in r.data.metrics.items()
    ]
    datasets = tuple(
        DatasetRef(
            name=i.dataset.name,
            digest=i.dataset.digest,
            source_type=i.dataset.source_type,
            source=i.dataset.source,
            schema=i.dataset.schema,
            profile=i.dataset.profile,
            context=next((t.value for t in i.tags if t.key == DATASET_CONTEXT_TAG), None),
        )
        for i in (r.inputs.dataset_inputs if r.inputs else [])
    )
    return Run(
        id=r.info.run_id,
        experiment_id=r.info.experiment_id,
        name=r.info.run_name,
        status=RunStatus(r.info.status),
        start_ms=r.info.start_time,
        end_ms=r.info.end_time,
        params=dict(r.data.params),
        metrics={m.key: MetricPoint(m.key, m.value, m.step, m.timestamp) for m in metric_objs},
        tags=dict(r.data.tags),
        datasets=datasets,
        artifact_uri=r.info.artifact_uri,
        user=r.info.user_id or None,
    )


def token_text(token: str | bytes | None) -> str | None:
    """MLflow's continuation token (bytes from some stores) as text; None at the end."""
    if not token:
        return None
    return token.decode("ascii") if isinstance(token, bytes) else token
