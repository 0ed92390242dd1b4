"""Training and batch inference on Ray against plain single-process baselines, same run.

1. Ray Train vs a plain PyTorch loop: the service's own training loop
   (`app.adapters.ray_train.mlp_train_loop`) in a TorchTrainer with one worker (1 CPU),
   against a plain loop over in-memory tensors with the same network (`torch_mlp.build`),
   optimizer, batch size, data and CPU budget (1 torch thread). Throughput is training
   rows per second over the epochs' training passes; the rest of the fit (worker group
   start, dataset split, validation, per-epoch MLflow metrics and checkpoints) is reported
   separately as startup and overhead.
2. Ray Data batch inference vs a pandas loop: the batch job's `BatchModel` in
   `map_batches` over a parquet file with 2 replicas (read, predict, write parquet),
   against one process reading the same file with pandas, predicting chunk by chunk with
   the same class and writing parquet.

Prints each side and the ratios (Ray / baseline; above 1 means Ray is faster).

    .venv/bin/python benchmarks/training.py [--rows 200000] [--epochs 3] [--batch-size 256]
        [--score-rows 1000000] [--rounds 2]
"""

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

PARAMS = {"hidden": [64, 32], "lr": 0.01, "batch_size": 256}


def plain_loop(frame: Any, features: list[str], epochs: int) -> list[float]:
    """Seconds per epoch of a plain PyTorch loop (training only)."""
    import torch

    from app.adapters import torch_mlp

    torch.manual_seed(0)
    torch.set_num_threads(1)  # the same CPU budget as the Ray Train worker (1 CPU)
    x = torch.tensor(frame[features].to_numpy(), dtype=torch.float32)
    mean, std = x.mean(0).tolist(), x.std(0).tolist()
    y = torch.tensor(frame["churned"].to_numpy(), dtype=torch.float32)
    model = torch_mlp.build(torch_mlp.CLASSIFIER, len(features), {**PARAMS, "epochs": epochs})
    optimizer = torch.optim.Adam(model.parameters(), lr=PARAMS["lr"])
    size = int(PARAMS["batch_size"])
    seconds = []
    for _ in range(epochs):
        began = time.perf_counter()
        batches = (  # standardised per batch, as the Ray loop does
            (torch_mlp.standardise(x[i : i + size], mean, std), y[i : i + size])
            for i in range(0, len(x), size)
        )
        torch_mlp.train_epoch(model, batches, optimizer, torch_mlp.CLASSIFIER)
        seconds.append(time.perf_counter() - began)
    return seconds


def ray_train(
    frame: Any, features: list[str], epochs: int, tracking_uri: str, storage: str
) -> tuple[list[float], float]:
    """Seconds per epoch (training only, as the loop logs them) and the fit's wall time."""
    import ray
    from mlflow import MlflowClient

    from app.adapters import ray_train as adapter

    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment(f"bench-{time.time_ns()}")
    run_id = client.create_run(experiment).info.run_id
    train = ray.data.from_pandas(frame[[*features, "churned"]]).materialize()
    val = ray.data.from_pandas(frame[[*features, "churned"]].head(2000)).materialize()
    mean = [float(frame[f].mean()) for f in features]
    std = [float(frame[f].std()) for f in features]
    config = {
        "trainer": "mlp_classifier",
        "params": {**PARAMS, "epochs": epochs},
        "features": features,
        "target": "churned",
        "mean": mean,
        "std": std,
        "tracking_uri": tracking_uri,
        "run_id": run_id,
    }
    began = time.perf_counter()
    adapter.fit(
        adapter.mlp_train_loop,
        config,
        {"train": train, "val": val},
        num_workers=1,
        use_gpu=False,
        resources_per_worker={"CPU": 1},
        storage_path=storage,
        name=f"bench-{time.time_ns()}",
        max_failures=0,
    )
    wall = time.perf_counter() - began
    history = client.get_metric_history(run_id, "epoch_seconds")
    return [m.value for m in sorted(history, key=lambda m: m.step)], wall


def log_model(tracking_uri: str, features: list[str]) -> str:
    """A trained-looking MLP logged as the batch job would find it; its model URI."""
    import mlflow
    import pandas as pd
    import torch

    from app.adapters import torch_mlp

    mlflow.set_tracking_uri(tracking_uri)
    network = torch_mlp.build(torch_mlp.CLASSIFIER, len(features), PARAMS)
    model = torch_mlp.Servable(network, [0.0] * len(features), [1.0] * len(features), True)
    model.eval()
    example = pd.DataFrame([[0.0] * len(features)], columns=features, dtype="float64")
    with mlflow.start_run() as run:
        mlflow.pytorch.log_model(
            model,
            name="model",
            input_example=example,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            serialization_format="pickle",
        )
    return f"runs:/{run.info.run_id}/model"


def ray_data(source: str, out: str, model_uri: str, tracking_uri: str) -> float:
    """Seconds for the batch job's pipeline: read -> map_batches(BatchModel) -> write."""
    import ray

    from app.jobs.batch_predict import IO_CPUS, BatchModelArgs, predict_dataset

    began = time.perf_counter()
    args = BatchModelArgs(tracking_uri, model_uri, None, "id", {"model_version": 1})
    predict_dataset(
        ray.data.read_parquet(source, ray_remote_args={"num_cpus": IO_CPUS}),
        args,
        batch_size=8192,
        replicas=2,
        cpus_per_replica=0.75,  # two replicas and the reads and writes on 2 CPUs
    ).write_parquet(out, ray_remote_args={"num_cpus": IO_CPUS})
    return time.perf_counter() - began


def wait_for_cpus(total: float, seconds: float = 120) -> None:
    """Until the Train run has handed back its CPUs."""
    import ray

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and ray.available_resources().get("CPU", 0) < total:
        time.sleep(0.5)


def pandas_loop(source: str, out: str, model_uri: str, tracking_uri: str) -> float:
    """Seconds for the same in one process: read, predict chunk by chunk, write."""
    import pandas as pd

    from app.jobs.batch_predict import BatchModel

    began = time.perf_counter()
    model = BatchModel(tracking_uri, model_uri, None, "id", {"model_version": 1})
    frame = pd.read_parquet(source)
    parts = [model(frame.iloc[i : i + 8192]) for i in range(0, len(frame), 8192)]
    pd.concat(parts, ignore_index=True).to_parquet(out)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="training rows")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256, help="training batch size")
    parser.add_argument("--score-rows", type=int, default=1_000_000, help="batch rows")
    parser.add_argument("--rounds", type=int, default=2, help="batch inference rounds")
    args = parser.parse_args()
    PARAMS["batch_size"] = args.batch_size

    import ray

    from app.samples import churn

    directory = Path(tempfile.mkdtemp(prefix="bench-training-"))
    tracking_uri = f"sqlite:///{directory}/mlflow.db"
    ray.init(
        address="local",
        num_cpus=2,
        _temp_dir=str(directory / "ray"),
        include_dashboard=False,
        logging_level=logging.WARNING,
    )
    frame = churn.generate(args.rows, seed=0)
    features = [c for c in frame.columns if c not in ("churned", "id")]

    plain = plain_loop(frame, features, args.epochs)
    ray_epochs, wall = ray_train(
        frame, features, args.epochs, tracking_uri, str(directory / "train")
    )
    plain_rps = args.rows / statistics.mean(plain)
    ray_rps = args.rows / statistics.mean(ray_epochs)
    print(
        f"training: {args.rows} rows x {args.epochs} epochs, MLP {PARAMS['hidden']}, "
        f"batch size {args.batch_size}"
    )
    print(f"  plain PyTorch loop     {plain_rps:>10.0f} rows/s (1 thread, as the worker)")
    print(f"  Ray Train, 1 worker    {ray_rps:>10.0f} rows/s")
    print(
        f"  Ray Train startup and per-epoch overhead {wall - sum(ray_epochs):.1f} s "
        f"(fit {wall:.1f} s, epochs {sum(ray_epochs):.1f} s)"
    )
    print(f"  ratio Ray Train / plain throughput: {ray_rps / plain_rps:.2f}x")

    wait_for_cpus(2)
    score = churn.generate(args.score_rows, seed=1).drop(columns=["churned"])
    source = str(directory / "score.parquet")
    score.to_parquet(source)
    model_uri = log_model(tracking_uri, features)
    ray_seconds, pandas_seconds = [], []
    for round_ in range(args.rounds):
        ray_seconds.append(
            ray_data(source, str(directory / f"ray-{round_}"), model_uri, tracking_uri)
        )
        pandas_seconds.append(
            pandas_loop(source, str(directory / f"pd-{round_}.parquet"), model_uri, tracking_uri)
        )
    ray_best, pandas_best = min(ray_seconds), min(pandas_seconds)
    print(f"batch inference: {args.score_rows} rows, best of {args.rounds} rounds")
    print(f"  pandas loop, 1 process {args.score_rows / pandas_best:>10.0f} rows/s")
    print(f"  Ray Data, 2 replicas   {args.score_rows / ray_best:>10.0f} rows/s")
    print(f"  ratio Ray Data / pandas throughput: {pandas_best / ray_best:.2f}x")
    ray.shutdown()


if __name__ == "__main__":
    main()
