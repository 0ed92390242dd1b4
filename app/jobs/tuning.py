"""The tuning half of the training job: Ray Tune trials as child MLflow runs, the best
trial's model registered with the search that found it."""

from __future__ import annotations

import json
import logging
from typing import Any

from app.adapters import ray_tune
from app.adapters.ray_train import load_checkpoint_model
from app.adapters.torch_mlp import CLASSIFIER
from app.core.search_space import Searcher, parse
from app.jobs.context import (
    FEATURE_SERVICE_TAG,
    MODEL_TAG,
    TOTAL_TAG,
    VERSION_TAG,
    JobContext,
    now_ms,
)
from app.jobs.spec import TrainingSpec
from app.jobs.tabular import TabularData

log = logging.getLogger(__name__)


def tune(spec: TrainingSpec, context: JobContext, parent_run_id: str, data: TabularData) -> None:
    """Search, close the trials' runs, register the best trial's model."""
    from mlflow.entities import Metric, RunTag

    assert spec.tune is not None
    config = spec.tune
    space = parse(config.search_space, config.searcher)
    total = space.grid_size() if config.searcher is Searcher.GRID else config.num_samples
    client = context.client
    parent = client.get_run(parent_run_id)
    client.log_batch(
        parent_run_id,
        tags=[
            RunTag(TOTAL_TAG, str(total)),
            RunTag("mlservice.searcher", config.searcher.value),
            RunTag("mlservice.search_seed", str(config.seed)),
            RunTag("mlservice.search_space", json.dumps(space.as_dict())),
            RunTag("mlservice.scheduler", config.scheduler.kind),
        ],
        synchronous=True,
    )
    setup = {
        "trainer": spec.trainer,
        "params": spec.params,
        "features": data.features,
        "target": data.target,
        "mean": data.mean,
        "std": data.std,
        "tracking_uri": context.tracking_uri,
        "experiment_id": parent.info.experiment_id,
        "parent_run_id": parent_run_id,
        "job_id": context.job_id,
    }
    results = ray_tune.run(
        space,
        config.searcher,
        setup,
        data.train.to_pandas(),
        data.val.to_pandas(),
        metric=config.metric,
        mode=config.mode,
        num_samples=config.num_samples,
        max_concurrent=config.max_concurrent_trials,
        scheduler=config.scheduler.model_dump(),
        seed=config.seed,
        cpus_per_trial=config.cpus_per_trial,
        storage=context.checkpoints("tune"),
        name=context.job_id,
        resources=dict(context.environment.placement.training_workers),
    )
    epochs = _close_trials(context, parent_run_id, results, int(spec.params.get("epochs", 5)))
    client.log_batch(
        parent_run_id,
        metrics=[
            Metric("total_epochs", float(epochs), now_ms(), 0),
            Metric("trials", float(len(results)), now_ms(), 0),
        ],
        synchronous=True,
    )
    best = results.get_best_result(metric=config.metric, mode=config.mode)
    if best.checkpoint is None:
        raise RuntimeError("no trial produced a checkpoint")
    best_run = str(best.metrics["mlflow_run_id"])
    network = load_checkpoint_model(best.checkpoint)
    classifier = spec.trainer == CLASSIFIER
    context.log_dataset(best_run, data)
    context.log_model(best_run, network, data, classifier=classifier, wrap=True)
    context.log_baseline(best_run, data, classifier=classifier)
    client.set_tag(parent_run_id, "mlservice.best_run", best_run)
    client.log_batch(
        parent_run_id,
        metrics=[Metric(f"best_{config.metric}", float(best.metrics[config.metric]), now_ms(), 0)],
        synchronous=True,
    )
    provenance: dict[str, Any] = {
        "search_space": space.as_dict(),
        "searcher": config.searcher.value,
        "seed": config.seed,
        "scheduler": config.scheduler.kind,
        "tuning_run_id": parent_run_id,
        "trials": len(results),
        "best_config": {k: _plain(v) for k, v in (best.config or {}).items()},
    }
    if data.feature_service is not None:
        client.set_tag(best_run, FEATURE_SERVICE_TAG, data.feature_service)
        provenance["feature_signature"] = data.feature_signature
    context.finish(best_run, spec, provenance)
    best_tags = client.get_run(best_run).data.tags
    for key in (MODEL_TAG, VERSION_TAG):
        if key in best_tags:
            client.set_tag(parent_run_id, key, best_tags[key])
    client.set_terminated(parent_run_id, "FINISHED")


def _close_trials(context: JobContext, parent_run_id: str, results: Any, epochs: int) -> int:
    """End the child runs Tune stopped (early: before the last epoch, tagged so); the total
    epochs trained."""
    client = context.client
    total = 0
    for result in results:
        metrics = result.metrics or {}
        done = int(metrics.get("training_iteration", 0))
        total += done
        run_id = metrics.get("mlflow_run_id")
        if run_id and client.get_run(run_id).info.status == "RUNNING":
            if done < epochs:
                client.set_tag(run_id, "mlservice.stopped_early", "true")
            client.set_terminated(run_id, "FINISHED" if done >= epochs else "KILLED")
    log.info("tuning run %s: %d trials, %d epochs in all", parent_run_id, len(results), total)
    return total


def _plain(value: Any) -> Any:
    return value if isinstance(value, int | float | str | bool) else str(value)
