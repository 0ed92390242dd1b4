"""Training and tuning job: `python -m app.jobs.train --config <yaml>` (or `--spec-json`).

Runs as a Ray job on the service's cluster (`ray job submit`, or `POST /training/submit`):
reads the data with Ray Data, trains with Ray Train's TorchTrainer (or searches with Ray
Tune), logs everything to MLflow, and registers the model as a development version
through the registry actor. A failure before the registration leaves no version.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

import ray

from app.jobs.context import JobContext, configure_data, fail_run
from app.jobs.spec import ScalingSpec, TrainingSpec
from app.jobs.tabular import TabularData, load
from app.logs import configure_logging
from app.settings import PlacementSettings

log = logging.getLogger("app.jobs.train")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m app.jobs.train", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="a training job config (YAML)")
    source.add_argument("--spec-json", help="the same, as JSON (used by the service)")
    args = parser.parse_args(argv)
    configure_logging("INFO")
    spec = (
        TrainingSpec.from_yaml(args.config)
        if args.config
        else TrainingSpec.model_validate(json.loads(args.spec_json))
    )
    configure_data()
    ray.init(logging_level=logging.WARNING)
    context = JobContext.discover()
    kind = "tune" if spec.tune else "train"
    run_id = context.start_run(spec, kind)
    try:
        data = load(spec.dataset, context)
        context.log_dataset(run_id, data)
        if spec.tune:
            from app.jobs.tuning import tune

            tune(spec, context, run_id, data)
        else:
            train(spec, context, run_id, data)
    except Exception as exc:
        fail_run(context, run_id, exc)
        log.exception("job %s failed", context.job_id)
        return 1
    return 0


def train(spec: TrainingSpec, context: JobContext, run_id: str, data: TabularData) -> None:
    """Ray Train over the data; log the model; register it."""
    from app.adapters import ray_train
    from app.adapters.torch_mlp import CLASSIFIER

    config: dict[str, Any] = {
        "trainer": spec.trainer,
        "params": spec.params,
        "features": data.features,
        "target": data.target,
        "mean": data.mean,
        "std": data.std,
        "tracking_uri": context.tracking_uri,
        "run_id": run_id,
    }
    scaling = spec.scaling
    resources = worker_resources(scaling, context.environment.placement)
    built_in = spec.trainer in ("mlp_classifier", "mlp_regressor")
    in_memory = data.train_table is not None and data.val_table is not None
    result = ray_train.fit(
        ray_train.mlp_train_loop if built_in else _import(spec.trainer),
        config,
        {"train": data.train, "val": data.val},
        num_workers=scaling.num_workers,
        use_gpu=scaling.use_gpu,
        resources_per_worker=resources,
        storage=context.checkpoints("train"),
        name=f"{context.job_id}",
        max_failures=spec.max_failures,
        # a training function of your own reads get_dataset_shard (app/jobs/examples.py)
        tables=(data.train_table, data.val_table) if built_in and in_memory else None,
    )
    if result.checkpoint is None:
        raise RuntimeError(f"training ended without a checkpoint: {result.error}")
    network = ray_train.load_checkpoint_model(result.checkpoint)
    classifier = spec.trainer == CLASSIFIER or spec.params.get("task") == "classification"
    context.log_model(
        run_id,
        network,
        data,
        classifier=classifier,
        wrap=spec.trainer in ("mlp_classifier", "mlp_regressor"),
    )
    context.log_baseline(run_id, data, classifier=classifier)
    provenance: dict[str, Any] = {"trainer": spec.trainer, "num_workers": scaling.num_workers}
    if data.feature_signature is not None:
        provenance["feature_signature"] = data.feature_signature
    context.finish(run_id, spec, provenance)


def worker_resources(scaling: ScalingSpec, placement: PlacementSettings) -> dict[str, float]:
    """What each Ray Train worker asks for: its CPUs (and GPUs), and the custom resource of
    its node group on a cluster (placement: GPU jobs on the GPU group)."""
    if scaling.use_gpu:
        return {
            "CPU": scaling.cpus_per_worker,
            "GPU": scaling.gpus_per_worker,
            **placement.gpu_training_workers,
        }
    return {"CPU": scaling.cpus_per_worker, **placement.training_workers}


def _import(reference: str) -> Any:
    import importlib

    module, _, function = reference.partition(":")
    return getattr(importlib.import_module(module), function or "train_loop_per_worker")


if __name__ == "__main__":
    sys.exit(main())
