"""Hyperparameter search with Ray Tune: grid, random or Bayesian (Optuna TPE), with ASHA.

Every trial trains the built-in MLP in a trial process of its own (which the next trial
reuses: `reuse_actors`) on the (shared, object-store) training and validation frames,
reports each epoch to Tune with a checkpoint, and logs to its own child MLflow run under
the tuning run (tagged `mlflow.parentRunId`): trials never share a run, so concurrent
trials cannot collide on params.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from app.adapters import torch_mlp
from app.core.search_space import Kind, Searcher, SearchSpace

log = logging.getLogger(__name__)

TRIAL_TAG = "mlservice.trial"


def to_tune(space: SearchSpace) -> dict[str, Any]:
    """The search space in Ray Tune's terms."""
    from ray import tune

    makers = {
        Kind.GRID: lambda v: tune.grid_search(list(v)),
        Kind.CHOICE: lambda v: tune.choice(list(v)),
        Kind.UNIFORM: lambda v: tune.uniform(v[0], v[1]),
        Kind.LOGUNIFORM: lambda v: tune.loguniform(v[0], v[1]),
        Kind.RANDINT: lambda v: tune.randint(v[0], v[1]),
    }
    return {p.name: makers[p.kind](p.values) for p in space.parameters}


def trial(
    config: dict[str, Any], setup: dict[str, Any], train: pd.DataFrame, val: pd.DataFrame
) -> None:
    """One trial (a Tune function trainable): train, log to a child run, report."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param
    from ray import tune

    context = tune.get_context()
    name = context.get_trial_name()
    params = {**setup["params"], **config}
    client = MlflowClient(setup["tracking_uri"])
    child = client.create_run(
        setup["experiment_id"],
        run_name=name,
        tags={
            "mlflow.parentRunId": setup["parent_run_id"],
            TRIAL_TAG: name,
            "mlservice.job_id": setup["job_id"],
        },
    )
    run_id = child.info.run_id
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()], synchronous=True)
    trainer, features, target = setup["trainer"], setup["features"], setup["target"]
    torch.manual_seed(int(params.get("seed", 0)))
    model = torch_mlp.build(trainer, len(features), params)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(params.get("lr", 0.01)))
    x_train, y_train = _tensors(train, features, target, setup)
    x_val, y_val = _tensors(val, features, target, setup)
    batch = int(params.get("batch_size", 256))
    for epoch in range(int(params.get("epochs", 5))):
        order = torch.randperm(len(y_train))
        batches = [(x_train[idx], y_train[idx]) for idx in order.split(batch)]
        loss, _ = torch_mlp.train_epoch(model, batches, optimizer, trainer)
        metrics = {"train_loss": loss, **torch_mlp.evaluate(model, [(x_val, y_val)], trainer)}
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[
                Metric(k, float(v), now, epoch) for k, v in {**metrics, "epoch": epoch + 1}.items()
            ],
            synchronous=True,
        )
        with tempfile.TemporaryDirectory() as directory:
            torch.save(model, os.path.join(directory, "model.pt"))
            tune.report(
                {**metrics, "mlflow_run_id": run_id},
                checkpoint=tune.Checkpoint.from_directory(directory),
            )
    client.set_terminated(run_id)


def _tensors(
    frame: pd.DataFrame, features: list[str], target: str, setup: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor(frame[features].to_numpy(dtype=np.float32))
    y = torch.tensor(frame[target].to_numpy(dtype=np.float32))
    return torch_mlp.standardise(x, setup["mean"], setup["std"]), y


def run(
    space: SearchSpace,
    searcher: Searcher,
    setup: dict[str, Any],
    train: pd.DataFrame,
    val: pd.DataFrame,
    *,
    metric: str,
    mode: str,
    num_samples: int,
    max_concurrent: int,
    scheduler: dict[str, Any],
    seed: int,
    cpus_per_trial: float,
    storage: tuple[Any, str],
    name: str,
    resources: dict[str, float] | None = None,
    reuse_actors: bool = True,
) -> Any:
    """Run the search; the ResultGrid. `reuse_actors`: a finished trial's process runs the
    next trial (False: Tune's default, a process per trial; benchmarks/training.py)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    search_alg: Any = None
    samples = num_samples
    if searcher is Searcher.BAYESIAN:
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        search_alg = ConcurrencyLimiter(
            OptunaSearch(metric=metric, mode=mode, seed=seed), max_concurrent=max_concurrent
        )
    elif searcher is Searcher.RANDOM:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        search_alg = BasicVariantGenerator(random_state=seed, max_concurrent=max_concurrent)
    else:
        samples = 1  # every grid point once
    epochs = int(setup["params"].get("epochs", 5))
    chosen: Any = FIFOScheduler()
    if scheduler["kind"] == "asha":
        chosen = ASHAScheduler(
            time_attr="training_iteration",
            max_t=epochs,
            grace_period=scheduler["grace_period"],
            reduction_factor=scheduler["reduction_factor"],
        )
    # one bundle per trial: its CPUs and the node group's resource (placement), if any
    trainable = tune.with_resources(
        tune.with_parameters(trial, setup=setup, train=train, val=val),
        tune.PlacementGroupFactory([{"CPU": cpus_per_trial, **(resources or {})}]),
    )
    tuner = tune.Tuner(
        trainable,
        param_space=to_tune(space),
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            num_samples=samples,
            search_alg=search_alg,
            scheduler=chosen,
            max_concurrent_trials=max_concurrent,
            # a finished trial's process runs the next one: its start (Python, Ray, torch
            # and MLflow imported) is paid once per concurrent trial, not once per trial;
            # each trial builds its model, optimiser and MLflow run anew
            reuse_actors=reuse_actors,
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=storage[1], storage_filesystem=storage[0]
        ),
    )
    return tuner.fit()
