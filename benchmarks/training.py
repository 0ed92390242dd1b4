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

3. Ray Tune: the tuning job's search with its trial processes reused (as the job runs
   it) against a process per trial (Tune's default); no target, it shows what a trial's
   process start costs.

Prints each side and the ratios (Ray / baseline; above 1 means Ray is faster).

    .venv/bin/python benchmarks/training.py [--rows 200000] [--epochs 3] [--batch-size 256]
        [--score-rows 1000000] [--rounds 2] [--trials 8] [--only training|tuning|batch]
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

from benchmarks import report  # noqa: E402

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

PARAMS = {"hidden": [64, 32], "lr": 0.01, "batch_size": 256}


def plain_loop(frame: Any, features: list[str], epochs: int, threads: int) -> list[float]:
    """Seconds per epoch of a plain PyTorch loop (training only) on `threads` threads."""
    import torch

    from app.adapters import torch_mlp

    torch.manual_seed(0)
    torch.set_num_threads(threads)  # the CPU budget of the Ray Train workers
    x = torch.tensor(frame[features].to_numpy(), dtype=torch.float32)
    mean, std = x.mean(0).tolist(), x.std(0).tolist()
    y = torch.tensor(frame["churned"].to_numpy(), dtype=torch.float32)
    model = torch_mlp.build(torch_mlp.CLASSIFIER, len(features), {**PARAMS, "epochs": epochs})
    optimizer = torch.optim.Adam(model.parameters(), lr=PARAMS["lr"])
    size = int(PARAMS["batch_size"])
    seconds = []
    for _ in range(epochs):
        began = time.perf_counter()
        batches = (  # standardised per batch: less work than the Ray loop, which does it once
            (torch_mlp.standardise(x[i : i + size], mean, std), y[i : i + size])
            for i in range(0, len(x), size)
        )
        torch_mlp.train_epoch(model, batches, optimizer, torch_mlp.CLASSIFIER)
        seconds.append(time.perf_counter() - began)
    torch.set_num_threads(1)
    return seconds


def ray_train(
    frame: Any, features: list[str], epochs: int, tracking_uri: str, storage: str, workers: int
) -> dict[str, Any]:
    """The fit's wall time, its start-up (fit() called -> first batch, as the loop logs
    `startup_seconds`) and the seconds of each epoch's training pass (`epoch_seconds`)."""
    import pyarrow as pa
    import pyarrow.fs as pafs
    import ray
    from mlflow import MlflowClient

    from app.adapters import ray_train as adapter

    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment(f"bench-{time.time_ns()}")
    run_id = client.create_run(experiment).info.run_id
    # as the job hands data it read in memory to the built-in trainer: arrow tables that
    # the workers take from the object store (the Ray Datasets are what a training
    # function of your own would read)
    train_table = pa.Table.from_pandas(frame[[*features, "churned"]], preserve_index=False)
    val_table = train_table.slice(0, 2000)
    train, val = ray.data.from_arrow(train_table), ray.data.from_arrow(val_table)
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
        num_workers=workers,
        use_gpu=False,
        resources_per_worker={"CPU": 1},
        storage=(pafs.LocalFileSystem(), storage),
        name=f"bench-{time.time_ns()}",
        max_failures=0,
        tables=(train_table, val_table),
    )
    wall = time.perf_counter() - began
    epochs_s = [
        m.value
        for m in sorted(client.get_metric_history(run_id, "epoch_seconds"), key=lambda m: m.step)
    ]
    startup = client.get_metric_history(run_id, "startup_seconds")[0].value
    return {"wall": wall, "startup": startup, "epochs": epochs_s}


def training(args: argparse.Namespace, directory: Path, tracking_uri: str) -> list[bool]:
    from app.samples import churn

    frame = churn.generate(args.rows, seed=0)
    features = [c for c in frame.columns if c not in ("churned", "id")]
    print(
        f"training: {args.rows} rows x {args.epochs} epochs, MLP {PARAMS['hidden']}, "
        f"batch size {args.batch_size} per worker; Ray Train workers of 1 CPU each"
    )
    verdicts = []
    for workers in (1, 2):
        plain = plain_loop(frame, features, args.epochs, threads=workers)
        fit = ray_train(
            frame, features, args.epochs, tracking_uri, str(directory / "train"), workers
        )
        wait_for_cpus(2)
        plain_rps = args.rows / statistics.mean(plain)
        ray_rps = args.rows / statistics.mean(fit["epochs"])
        rest = fit["wall"] - fit["startup"] - sum(fit["epochs"])
        print(f" {workers} worker(s) on {workers} CPU(s):")
        print(f"  plain PyTorch loop, {workers} thread(s) {plain_rps:>10.0f} rows/s per epoch")
        print(f"  Ray Train, {workers} worker(s)        {ray_rps:>10.0f} rows/s per epoch")
        print(
            f"  fit {fit['wall']:.1f} s = start-up {fit['startup']:.1f} s + epochs "
            f"{sum(fit['epochs']):.1f} s + validation, checkpoints, teardown {rest:.1f} s"
        )
        if workers == 1:  # the target; two workers show the scaling
            verdicts.append(
                report.at_least("Ray Train / plain, rows/s per epoch", ray_rps / plain_rps, 0.8)
            )
        else:
            print(f"  Ray Train / plain on 2 CPUs: {ray_rps / plain_rps:.2f}x")
        verdicts.append(report.at_most(f"start-up, {workers} worker(s)", fit["startup"], 8, " s"))
    return verdicts


def tuning(args: argparse.Namespace, directory: Path, tracking_uri: str) -> None:
    """The tuning job's search (`ray_tune.run`): `--trials` random trials of 1 CPU, two at
    a time, FIFO, 2 epochs each on 16,000 rows, with trial processes reused (as the job
    runs it) and with a process per trial (Ray Tune's default). No target: it shows what a
    trial's process start costs."""
    import pyarrow.fs as pafs
    from mlflow import MlflowClient

    from app.adapters import ray_tune
    from app.core.search_space import Searcher, parse
    from app.samples import churn

    frame = churn.generate(20_000, seed=1)
    features = [c for c in frame.columns if c not in ("churned", "id")]
    train, val = frame.iloc[:16_000], frame.iloc[16_000:]
    client = MlflowClient(tracking_uri)
    space = parse({"lr": {"loguniform": [0.001, 0.1]}}, Searcher.RANDOM)
    print(f"tuning: {args.trials} random trials of 1 CPU, 2 at a time, 2 epochs on 16,000 rows")
    seconds: dict[bool, float] = {}
    # a first search of two trials, not timed, pays this process's own imports of Tune
    for reuse, trials in ((False, 2), (False, args.trials), (True, args.trials)):
        parent = client.create_run(client.create_experiment(f"bench-tune-{time.time_ns()}"))
        setup = {
            "trainer": "mlp_classifier",
            "params": {**PARAMS, "epochs": 2},
            "features": features,
            "target": "churned",
            "mean": [float(train[f].mean()) for f in features],
            "std": [float(train[f].std()) for f in features],
            "tracking_uri": tracking_uri,
            "experiment_id": parent.info.experiment_id,
            "parent_run_id": parent.info.run_id,
            "job_id": "bench",
        }
        began = time.perf_counter()
        results = ray_tune.run(
            space,
            Searcher.RANDOM,
            setup,
            train,
            val,
            metric="val_loss",
            mode="min",
            num_samples=trials,
            max_concurrent=2,
            scheduler={"kind": "fifo"},
            seed=0,
            cpus_per_trial=1,
            storage=(pafs.LocalFileSystem(), str(directory / "tune")),
            name=f"bench-tune-{time.time_ns()}",
            reuse_actors=reuse,
        )
        elapsed = time.perf_counter() - began
        errors = [r.error for r in results if r.error]
        if errors or len(results) != trials:
            raise RuntimeError(f"tuning failed: {errors[:1]}")
        wait_for_cpus(2)
        if trials != args.trials:
            continue
        seconds[reuse] = elapsed
        way = "reused" if reuse else "one per trial (Tune's default)"
        print(f"  trial processes {way:31s} {seconds[reuse]:6.1f} s")
    print(f"  reused / one per trial: {seconds[True] / seconds[False]:.2f}x")


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


def ray_data(source: str, out: str, model_uri: str, tracking_uri: str, cpus: int) -> float:
    """Seconds for the batch job's pipeline (read -> predict -> write parquet) with the
    job's defaults, Ray Data held to `cpus` CPUs."""
    from ray.data import DataContext

    from app.jobs.batch_predict import BatchModelArgs, predict_dataset, read_input, write_output
    from app.jobs.spec import BatchPredictSpec

    defaults = BatchPredictSpec(
        kind="batch_predict", model="m", version=1, input=source, output=out
    )
    options = DataContext.get_current().execution_options
    options.resource_limits = options.resource_limits.copy(cpu=cpus)
    began = time.perf_counter()
    args = BatchModelArgs(tracking_uri, model_uri, None, "id", {"model_version": 1})
    predictions = predict_dataset(
        read_input(source, None),
        args,
        batch_size=defaults.batch_size,
        replicas=min(defaults.concurrency, cpus),
        cpus_per_replica=defaults.cpus_per_replica,
    )
    write_output(predictions, out, None)
    return time.perf_counter() - began


def check_values(
    score: Any, out: str, model_uri: str, tracking_uri: str, sample: int = 1000
) -> None:
    """Ray Data's predictions, value by value, against the model's own on a sample."""
    import mlflow
    import numpy as np
    import pandas as pd

    written = pd.read_parquet(out).set_index("id").loc[score["id"].head(sample)]
    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(model_uri)
    features = [c for c in score.columns if c != "id"]
    expected = np.asarray(model.predict(score[features].head(sample)))
    got = np.array([list(p.values()) for p in written["prediction"]])
    assert len(written) == sample and np.allclose(got, expected, atol=1e-6), "predictions differ"
    print(f"  {sample} predictions of Ray Data's output equal the model's own")


def wait_for_cpus(total: float, seconds: float = 120) -> None:
    """Until the Train run has handed back its CPUs."""
    import ray

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and ray.available_resources().get("CPU", 0) < total:
        time.sleep(0.5)


PANDAS_LOOP = """
import sys, pandas as pd, pyarrow as pa, pyarrow.parquet as pq
from app.jobs.batch_predict import BatchModel
from app.jobs.spec import BatchPredictSpec
source, out, model_uri, tracking_uri = sys.argv[1:]
model = BatchModel(tracking_uri, model_uri, None, "id", {"model_version": 1})
frame = pd.read_parquet(source)
size = BatchPredictSpec.model_fields["batch_size"].default
parts = [model(frame.iloc[i : i + size]) for i in range(0, len(frame), size)]
pq.write_table(pa.concat_tables(parts), out)
"""


def pandas_loop(source: str, out: str, model_uri: str, tracking_uri: str) -> float:
    """Seconds for the same in one new Python process, as a user's script would run it:
    start, import, load the model, read, predict chunk by chunk, write. (Ray Data's model
    replicas are new processes too, and pay the same imports and model load.)"""
    import subprocess

    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", PANDAS_LOOP, source, out, model_uri, tracking_uri],
        check=True,
        cwd=Path(__file__).resolve().parents[1],
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - began


def batch(args: argparse.Namespace, directory: Path, tracking_uri: str) -> list[bool]:
    from app.jobs.context import configure_data
    from app.samples import churn

    configure_data()  # as the batch job does
    features = [c for c in churn.generate(10, seed=0).columns if c not in ("churned", "id")]
    score = churn.generate(args.score_rows, seed=1).drop(columns=["churned"])
    source = str(directory / "score.parquet")
    score.to_parquet(source)
    model_uri = log_model(tracking_uri, features)
    seconds: dict[str, list[float]] = {"pandas": [], "ray 1": [], "ray 2": []}
    for round_ in range(args.rounds):
        for cpus in (1, 2):
            out = str(directory / f"ray-{cpus}-{round_}")
            seconds[f"ray {cpus}"].append(ray_data(source, out, model_uri, tracking_uri, cpus))
        out = str(directory / f"pd-{round_}.parquet")
        seconds["pandas"].append(pandas_loop(source, out, model_uri, tracking_uri))
    check_values(score, str(directory / "ray-2-0"), model_uri, tracking_uri)
    rate = {way: args.score_rows / min(values) for way, values in seconds.items()}
    print(f"batch inference: {args.score_rows} rows, best of {args.rounds} rounds")
    print(f"  pandas loop, 1 process   {rate['pandas']:>10.0f} rows/s")
    print(f"  Ray Data on 1 CPU        {rate['ray 1']:>10.0f} rows/s")
    print(f"  Ray Data on 2 CPUs       {rate['ray 2']:>10.0f} rows/s")
    print(f"  scaling 1 -> 2 CPUs: {rate['ray 2'] / rate['ray 1']:.2f}x")
    return [
        report.at_least("Ray Data on 2 CPUs / pandas, rows/s", rate["ray 2"] / rate["pandas"], 1.5)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="training rows")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256, help="training batch size")
    parser.add_argument("--score-rows", type=int, default=1_000_000, help="batch rows")
    parser.add_argument("--rounds", type=int, default=2, help="batch inference rounds")
    parser.add_argument("--trials", type=int, default=8, help="tuning trials")
    parser.add_argument("--only", choices=("training", "batch", "tuning"), help="run one part")
    args = parser.parse_args()
    PARAMS["batch_size"] = args.batch_size

    import ray

    directory = Path(tempfile.mkdtemp(prefix="bench-training-"))
    tracking_uri = f"sqlite:///{directory}/mlflow.db"
    # as scripts/serve runs Ray on one machine: no preemption watcher beside each fit
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    ray.init(
        address="local",
        num_cpus=2,
        _temp_dir=str(directory / "ray"),
        include_dashboard=False,
        logging_level=logging.WARNING,
    )
    print(report.header("ray", "torch", "mlflow", "pandas", "pyarrow"), flush=True)
    verdicts = []
    if args.only in (None, "training"):
        verdicts += training(args, directory, tracking_uri)
    if args.only in (None, "tuning"):
        tuning(args, directory, tracking_uri)
    if args.only in (None, "batch"):
        verdicts += batch(args, directory, tracking_uri)
    ray.shutdown()
    print(f"{sum(verdicts)} of {len(verdicts)} targets met")


if __name__ == "__main__":
    main()
