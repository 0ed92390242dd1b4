"""A training function of your own, by import path: a template.

`POST /training/submit {"trainer": "app.jobs.examples:logistic_regression", ...}` runs this
instead of a built-in MLP. A training function is Ray Train's `train_loop_per_worker`:

- `config` holds `features`, `target`, `mean` and `std` (of the training set), `params`
  (the request's), `tracking_uri` and `run_id` (the job's MLflow run);
- the data is `ray.train.get_dataset_shard("train")` (this worker's share) and
  `get_dataset_shard("val")` (all of it);
- each epoch, report metrics with `ray.train.report`, and on rank 0 a checkpoint holding
  `model.pt` (`torch.save` of a module that takes raw feature rows): the job logs the last
  one to MLflow and registers it;
- `EVALUATION_METRICS` (on the module, or on the function) names the metrics that say how
  good the model is and their goals: the staging gate compares those with production's.

Put your module on the cluster's Python path (install it in the environment `scripts/serve`
creates, or ship it with `ray job submit --working-dir`).
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import ray
import ray.train
import torch
from torch import nn

EVALUATION_METRICS = {"val_accuracy": "maximize"}


class Standardised(nn.Module):
    """Scales raw features, then a linear layer; class probabilities out."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor([s or 1.0 for s in std], dtype=torch.float32))
        self.linear = nn.Linear(len(mean), 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear((x - self.mean) / self.std), dim=-1)


def logistic_regression(config: dict[str, Any]) -> None:
    """Logistic regression with plain SGD (no DDP): each worker fits its shard."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    features, target = config["features"], config["target"]
    params = config["params"]
    torch.manual_seed(int(params.get("seed", 0)))
    batch_size = int(params.get("batch_size", 64))
    model = Standardised(config["mean"], config["std"])
    optimizer = torch.optim.SGD(model.parameters(), lr=float(config["params"].get("lr", 0.1)))
    rank = ray.train.get_context().get_world_rank()
    for epoch in range(int(config["params"].get("epochs", 3))):
        for batch in ray.train.get_dataset_shard("train").iter_torch_batches(
            batch_size=batch_size, dtypes=torch.float32
        ):
            x = torch.stack([batch[f] for f in features], dim=1)
            optimizer.zero_grad()
            loss = nn.functional.nll_loss(torch.log(model(x) + 1e-9), batch[target].long())
            loss.backward()
            optimizer.step()
        correct = rows = 0
        for batch in ray.train.get_dataset_shard("val").iter_torch_batches(
            batch_size=4096, dtypes=torch.float32
        ):
            x = torch.stack([batch[f] for f in features], dim=1)
            correct += int((model(x).argmax(-1) == batch[target].long()).sum())
            rows += len(x)
        metrics = {"val_accuracy": correct / max(rows, 1), "epoch": epoch + 1}
        if rank == 0:
            MlflowClient(config["tracking_uri"]).log_batch(
                config["run_id"],
                metrics=[
                    Metric(k, float(v), int(time.time() * 1000), epoch) for k, v in metrics.items()
                ],
            )
            with tempfile.TemporaryDirectory() as directory:
                torch.save(model, os.path.join(directory, "model.pt"))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
        else:
            ray.train.report(metrics)
