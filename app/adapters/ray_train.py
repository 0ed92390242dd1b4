"""Distributed training with Ray Train's TorchTrainer over Ray Data.

Each worker trains on its shard of the training set and sees the whole validation set;
every epoch, rank 0 reports its metrics with a checkpoint (the model, the optimiser and
the epoch) that Ray Train keeps in the artifact store, and Ray Train's controller logs
the metrics to the MLflow run (`train_tracking.EpochLogger`: the workers never import
MLflow). After a worker failure Ray Train restarts the workers, and the loop resumes from
the last checkpoint.

A worker reads its shard once, into standardised tensors, and trains every epoch on those
(`Split`): Ray Data's per-batch iteration costs more than the training step itself for a
small network, and paying it every epoch made an epoch 3x slower than a plain PyTorch
loop (benchmarks/training.py). Data the job read in memory reaches the workers as arrow
tables in the object store, one equal shard per worker (`fit`'s `tables`): no Ray Data
execution at all, whose split coordinator and executors took about 30 s of every fit's
start on a busy 2-core machine for 4,000 rows. Larger data comes as Ray Datasets, split
by Ray Data; a shard too large to hold (`MAX_CACHED_BYTES`) is streamed from Ray Data
every epoch.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import ray
import torch

from app.adapters import torch_mlp
from app.adapters.train_tracking import EPOCH, RESUMED_AT, EpochLogger

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "model.pt"
MAX_CACHED_BYTES = 2 * 1024**3  # per worker and split; a larger shard is streamed
SUBMITTED_AT = "_submitted_at"  # config key: when fit() was called (for startup_seconds)
SHARDS = "_shards"  # config key: {"train": [a ref per rank], "val": ref} of arrow tables
# How often Ray Train's controller polls the workers (Ray's default: 2 s). Each poll takes
# one report from each worker, and a worker's next report waits until the last was taken
# (a queue of one); the controller also sees the workers start and finish at a poll. At
# 2 s a fit of short epochs waited about 2 s an epoch and as long again at its start and
# end: 3 epochs of 0.3 s took 16.4 s a fit, 8.7-10.1 s at 0.25 s (benchmarks/training.py).
# The controller passes the variable on to its process; set it to choose another.
POLL_INTERVAL_S = 0.25
POLL_INTERVAL_VAR = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"


def mlp_train_loop(config: dict[str, Any]) -> None:
    """The built-in trainers' loop (`train_loop_per_worker`); `fit` logs what it reports."""
    ray.data.DataContext.get_current().enable_progress_bars = False
    context = ray.train.get_context()
    rank = context.get_world_rank()
    trainer, params = config["trainer"], config["params"]
    features, target = config["features"], config["target"]
    torch.manual_seed(int(params.get("seed", 0)) + rank)
    net = torch_mlp.build(trainer, len(features), params)
    model = ray.train.torch.prepare_model(net)
    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=float(params.get("lr", 0.01)),
        weight_decay=float(params.get("weight_decay", 0.0)),
    )
    start = _resume(model, optimizer)
    epochs, batch_size = int(params.get("epochs", 5)), int(params.get("batch_size", 256))
    train = Split("train", features, target, config)
    val = Split("val", features, target, config)
    if start:
        log.warning("rank %d resumes at epoch %d from the last checkpoint", rank, start)
    for epoch in range(start, epochs):
        began = time.perf_counter()
        first: dict[str, float] = {}
        if epoch == start:
            first["startup_seconds"] = time.time() - config[SUBMITTED_AT]
            if start:  # the run says so too (a log line is easy to miss)
                first[RESUMED_AT] = start
        loss, rows = torch_mlp.train_epoch(model, train.batches(batch_size), optimizer, trainer)
        metrics = {
            **first,
            "train_loss": loss,
            "epoch_seconds": time.perf_counter() - began,
            "rows_per_second": rows
            * context.get_world_size()
            / max(time.perf_counter() - began, 1e-9),
            **torch_mlp.evaluate(model, val.batches(4096), trainer),
            EPOCH: epoch + 1,
        }
        # with the checkpoint: an epoch the run shows as done can be resumed from
        _report(epoch, metrics, model, optimizer, rank)


class Split:
    """A worker's shard of one split as standardised (x, y) batches. Made before the first
    epoch, it reads the shard into two tensors (the rank's arrow table from the object
    store where `fit` was given `tables`, otherwise Ray Data's shard in whole blocks), and
    every epoch slices those; a Ray Data shard over `MAX_CACHED_BYTES` is streamed on
    every pass instead."""

    def __init__(
        self, split: str, features: list[str], target: str, config: dict[str, Any]
    ) -> None:
        self.features, self.target = features, target
        self.mean, self.std = config["mean"], config["std"]
        self.shard: Any = None  # Ray Data's iterator, where the data comes that way
        self.x: torch.Tensor | None
        self.y: torch.Tensor | None
        shards = config.get(SHARDS)
        if shards is not None:  # this rank's arrow table (the whole of `val`)
            ref = shards[split]
            if isinstance(ref, list):
                ref = ref[ray.train.get_context().get_world_rank()]
            table = ray.get(ref)
            self.x, self.y = self._tensors(
                {c: table.column(c).to_numpy() for c in (*features, target)}
            )
            return
        self.shard = ray.train.get_dataset_shard(split)
        self.x, self.y = self._read()

    def batches(self, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.x is None or self.y is None:
            for batch in self.shard.iter_batches(batch_size=size, batch_format="numpy"):
                yield self._tensors(batch)
            return
        for i in range(0, len(self.y), size):
            yield self.x[i : i + size], self.y[i : i + size]

    def _read(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        xs: list[torch.Tensor] | None = []
        ys: list[torch.Tensor] = []
        size = 0
        # read to the end even when over the limit: workers of a streaming split pass
        # through each epoch together, and one that stopped midway would hold the others
        for batch in self.shard.iter_batches(batch_size=None, batch_format="numpy"):
            if xs is None:
                continue
            x, y = self._tensors(batch)
            size += x.nbytes + y.nbytes
            if size > MAX_CACHED_BYTES:
                log.warning("shard over %d bytes: read from Ray Data every epoch", size)
                xs, ys = None, []
                continue
            xs.append(x)
            ys.append(y)
        if xs is None:
            return None, None
        if not ys:
            return torch.empty(0, len(self.features)), torch.empty(0)
        return torch.cat(xs), torch.cat(ys)

    def _tensors(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        import numpy as np

        x = torch.from_numpy(np.stack([batch[f] for f in self.features], axis=1).astype(np.float32))
        y = torch.from_numpy(np.asarray(batch[self.target], dtype=np.float32))
        return torch_mlp.standardise(x, self.mean, self.std), y


def _resume(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as directory:
        state = torch.load(os.path.join(directory, "state.pt"), weights_only=False)
    _unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["epoch"]) + 1


def _report(
    epoch: int,
    metrics: dict[str, float],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rank: int,
) -> None:
    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as directory:
        torch.save(
            {
                "model": _unwrap(model).state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
            },
            os.path.join(directory, "state.pt"),
        )
        torch.save(_unwrap(model), os.path.join(directory, CHECKPOINT_FILE))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    inner = getattr(model, "module", model)
    assert isinstance(inner, torch.nn.Module)
    return inner


def fit(
    loop: Callable[[dict[str, Any]], None],
    config: dict[str, Any],
    datasets: dict[str, Any],
    *,
    num_workers: int,
    use_gpu: bool,
    resources_per_worker: dict[str, float],
    storage: tuple[Any, str],
    name: str,
    max_failures: int,
    tables: tuple[Any, Any] | None = None,
) -> Any:
    """Run a TorchTrainer; the result's checkpoint is the last epoch's. `storage`: the
    pyarrow filesystem and path that results and checkpoints go to. `tables`: the train
    and val splits as arrow tables, for `mlp_train_loop`, which then takes them from the
    object store instead of `datasets` (the train table cut into `num_workers` equal
    shards: like Ray Data's equal split, the remainder's rows are left out, so that the
    workers of a DDP step run as many batches each)."""
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    os.environ.setdefault(POLL_INTERVAL_VAR, str(POLL_INTERVAL_S))  # read by TorchTrainer
    submitted = time.time()
    if tables is not None:
        train, val = tables
        size = train.num_rows // num_workers
        if size == 0:
            raise ValueError(
                f"{train.num_rows} training rows cannot be shared by {num_workers} workers"
            )
        shards = {
            "train": [ray.put(train.slice(rank * size, size)) for rank in range(num_workers)],
            "val": ray.put(val),
        }
        config, datasets = {**config, SHARDS: shards}, {}
    trainer = TorchTrainer(
        loop,
        train_loop_config={**config, SUBMITTED_AT: submitted},
        scaling_config=ScalingConfig(
            num_workers=num_workers, use_gpu=use_gpu, resources_per_worker=resources_per_worker
        ),
        datasets=datasets or None,
        dataset_config=DataConfig(datasets_to_split=["train"]),
        run_config=RunConfig(
            name=name,
            storage_path=storage[1],
            storage_filesystem=storage[0],
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=max_failures),
            # the built-in loop reports its epochs; the controller logs them to MLflow (mypy
            # reads `ray.train`'s V1 names, whose callbacks are Tune's; these are V2's)
            callbacks=(
                [EpochLogger(config["tracking_uri"], config["run_id"])]  # type: ignore[list-item]
                if loop is mlp_train_loop
                else None
            ),
        ),
    )
    return trainer.fit()


def load_checkpoint_model(checkpoint: Any) -> torch.nn.Module:
    """The network saved in a checkpoint's `model.pt`."""
    with checkpoint.as_directory() as directory:
        model = torch.load(os.path.join(directory, CHECKPOINT_FILE), weights_only=False)
    assert isinstance(model, torch.nn.Module)
    return model
