"""Batch prediction job: `python -m app.jobs.batch_predict --config <yaml>` (or via
`POST /training/submit` with `kind: batch_predict`).

Ray Data reads the parquet input, `map_batches` runs the registered version (by number,
or the one holding a stage) on a pool of model replicas, and every output row carries
the prediction, the model version and the input's digest. A manifest beside the output
files records the same, and the row counts.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray
from mlflow.entities import Metric

from app.core.lifecycle import ModelStage
from app.jobs.context import JobContext, configure_data, fail_run, now_ms
from app.jobs.spec import BatchPredictSpec
from app.jobs.tabular import location
from app.logs import configure_logging

log = logging.getLogger("app.jobs.batch_predict")
IO_CPUS = 0.25  # reading and writing parquet: mostly waiting on files
EXPERIMENT = "batch-predictions"


class BatchModel:
    """One model replica of the pool: predicts on a pandas batch."""

    def __init__(
        self,
        tracking_uri: str,
        model_uri: str,
        features: list[str] | None,
        id_column: str | None,
        labels: dict[str, Any],
    ) -> None:
        import mlflow

        from app.core.model_io import to_jsonable

        mlflow.set_tracking_uri(tracking_uri)
        self._model = mlflow.pyfunc.load_model(model_uri)
        schema = self._model.metadata.get_input_schema()
        named = schema is not None and schema.has_input_names()
        self._features = features or (list(schema.input_names()) if named else None)
        self._tensor = bool(schema is not None and schema.is_tensor_spec())
        self._id_column = id_column
        self._labels = labels
        self._jsonable = to_jsonable

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        columns = self._features or [c for c in batch.columns if c != self._id_column]
        inputs = batch[columns]
        model_input = inputs.to_numpy(dtype="float32") if self._tensor else inputs
        out = {"prediction": self._arrow(self._model.predict(model_input))}
        if self._id_column:
            out = {self._id_column: pa.array(batch[self._id_column].to_numpy()), **out}
        rows = len(batch)
        for name, value in self._labels.items():
            out[name] = pa.repeat(value, rows)
        return pa.table(out)

    def _arrow(self, output: Any) -> Any:
        """The model's output as one Arrow column, built from its arrays (no Python object
        per row): a value per row, or a struct per row for a frame of several columns
        (class probabilities: {"0": p0, "1": p1}, as `/predict` answers them)."""
        import numpy as np
        import pandas as pd
        import pyarrow as pa

        if isinstance(output, pd.DataFrame):
            if output.shape[1] == 1:
                return self._arrow(output.iloc[:, 0])
            return pa.StructArray.from_arrays(
                [pa.array(output[c].to_numpy()) for c in output.columns],
                names=[str(c) for c in output.columns],
            )
        if isinstance(output, pd.Series):
            output = output.to_numpy()
        if isinstance(output, np.ndarray) and output.ndim == 1 and output.dtype != object:
            return pa.array(output)
        return pa.array(self._jsonable(output))  # anything else, as JSON would carry it


@dataclass(frozen=True)
class BatchModelArgs:
    """What each replica loads: the model, and how to shape its input and output."""

    tracking_uri: str
    model_uri: str
    features: list[str] | None
    id_column: str | None
    labels: dict[str, Any]


def predict_dataset(
    dataset: Any,
    args: BatchModelArgs,
    *,
    batch_size: int,
    replicas: int,
    cpus_per_replica: float,
    resources: dict[str, float] | None = None,
) -> Any:
    """`dataset` with predictions: `map_batches` over a pool of 1..`replicas` model replicas.

    The pool starts with one replica and grows while CPUs are free, so a busy cluster
    (the service beside it on two cores) slows the job down rather than stalling it."""
    from ray.data import ActorPoolStrategy

    return dataset.map_batches(
        BatchModel,
        batch_format="pandas",
        batch_size=batch_size,
        compute=ActorPoolStrategy(min_size=1, max_size=replicas),
        num_cpus=cpus_per_replica,
        resources=resources or None,  # the node group's (placement), on a cluster
        fn_constructor_kwargs=asdict(args),
    )


def read_input(path: str, filesystem: Any) -> Any:
    """The input parquet file or directory as a dataset."""
    return ray.data.read_parquet(path, filesystem=filesystem, num_cpus=IO_CPUS)


def write_output(predictions: Any, path: str, filesystem: Any) -> None:
    """Write the predictions as parquet files under `path`."""
    predictions.write_parquet(path, filesystem=filesystem, ray_remote_args={"num_cpus": IO_CPUS})


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m app.jobs.batch_predict", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="a batch prediction config (YAML)")
    source.add_argument("--spec-json", help="the same, as JSON (used by the service)")
    args = parser.parse_args(argv)
    configure_logging("INFO")
    import yaml

    raw = (
        yaml.safe_load(Path(args.config).read_text()) if args.config else json.loads(args.spec_json)
    )
    spec = BatchPredictSpec.model_validate({"kind": "batch_predict", **raw})
    configure_data()
    ray.init(logging_level=logging.WARNING)
    context = JobContext.discover()
    run_id = _start_run(context, spec)
    try:
        predict(spec, context, run_id)
    except Exception as exc:
        fail_run(context, run_id, exc)
        log.exception("job %s failed", context.job_id)
        return 1
    return 0


def predict(spec: BatchPredictSpec, context: JobContext, run_id: str) -> None:
    """Read, predict, write, count."""
    version = spec.version or _holder(context, spec.model, ModelStage(spec.stage or ""))
    source, target = location(spec.input), location(spec.output)
    digest = context.storage.digest(source)
    client = context.client
    client.set_tag(run_id, "mlservice.model_version", str(version))
    client.set_tag(run_id, "mlservice.input_digest", digest)
    began = time.perf_counter()
    in_fs, in_path = context.storage.locate(source)
    out_fs, out_path = context.storage.locate(target)
    dataset = read_input(in_path, in_fs)
    rows = dataset.count()
    client.set_tag(run_id, "mlservice.total", str(rows))
    labels = {"model": spec.model, "model_version": version, "input_digest": digest}
    predictions = predict_dataset(
        dataset,
        BatchModelArgs(
            context.tracking_uri,
            # the version's artifacts themselves: replicas load them without a round
            # trip to the registry's database each
            client.get_model_version_download_uri(spec.model, str(version)),
            spec.features,
            spec.id_column,
            labels,
        ),
        batch_size=spec.batch_size,
        replicas=spec.concurrency,
        cpus_per_replica=spec.cpus_per_replica,
        resources=dict(context.environment.placement.batch_workers),
    )
    write_output(predictions, out_path, out_fs)
    written = ray.data.read_parquet(out_path, filesystem=out_fs).count()
    seconds = time.perf_counter() - began
    manifest = {
        **labels,
        "input": spec.input,
        "rows_in": rows,
        "rows_out": written,
        "job_id": context.job_id,
        "mlflow_run_id": run_id,
    }
    with out_fs.open_output_stream(f"{out_path}/_manifest.json") as stream:
        stream.write(json.dumps(manifest, indent=2).encode())
    client.log_batch(
        run_id,
        metrics=[
            Metric("rows_written", float(written), now_ms(), 0),
            Metric("rows_per_second", written / max(seconds, 1e-9), now_ms(), 0),
            Metric("seconds", seconds, now_ms(), 0),
        ],
        synchronous=True,
    )
    if written != rows:
        raise RuntimeError(f"wrote {written} rows for {rows} input rows")
    client.set_terminated(run_id, "FINISHED")
    log.info(
        "%d rows predicted with %s v%s in %.1f s -> %s",
        written,
        spec.model,
        version,
        seconds,
        spec.output,
    )


def _holder(context: JobContext, model: str, stage: ModelStage) -> int:
    view = ray.get(context.registry.get_model.remote(model))
    holders = [v.version for v in view.versions if v.stage is stage]
    if not holders:
        raise RuntimeError(f"no version of {model!r} is in {stage}")
    return int(max(holders))


def _start_run(context: JobContext, spec: BatchPredictSpec) -> str:
    import uuid

    client = context.client
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(
            EXPERIMENT, artifact_location=f"{context.artifact_root}/{uuid.uuid4().hex}"
        )
    )
    run = client.create_run(
        experiment_id,
        run_name=context.job_id,
        tags={
            "mlservice.job_id": context.job_id,
            "mlservice.kind": "batch_predict",
            "mlservice.unit": "rows",
            "mlservice.model": spec.model,
        },
    )
    return str(run.info.run_id)


if __name__ == "__main__":
    sys.exit(main())
