"""`/predict` with the prediction log on against off, same run, same model.

One local Ray cluster runs the `ml` application as `serve_config.yaml` builds it. The same
MLflow model is registered and deployed twice: `bench-logged` (monitoring policy
sample_rate 1: every request's rows go to the prediction log) and `bench-unlogged`
(sample_rate 0). Rounds alternate between them with the same request (10 rows) from the
same clients. Prints p50/p99 per model and the ratio logged/unlogged (target: p50 at most
1.05x), and how many rows the log holds afterwards.

    .venv/bin/python benchmarks/monitoring.py [--requests 600] [--rounds 3] [--clients 4]
"""

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROWS = [[0.1 * i, 0.2, 0.3, 0.4] for i in range(10)]
MODELS = {"bench-logged": 1.0, "bench-unlogged": 0.0}


def run_round(
    url: str, body: dict[str, object], headers: dict[str, str], n: int, clients: int
) -> list[float]:
    with httpx.Client(timeout=60, headers=headers) as http:

        def one(_: int) -> float:
            started = time.perf_counter()
            response = http.post(url, json=body)
            response.raise_for_status()
            return (time.perf_counter() - started) * 1000

        with ThreadPoolExecutor(clients) as pool:
            return list(pool.map(one, range(n)))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()

    import ray
    from ray import serve

    from app.adapters.prediction_log import PredictionLogReader
    from app.adapters.storage import open_storage
    from app.core.access import Role
    from app.settings import StorageSettings
    from benchmarks.ml_app import start_ml_app
    from testkit.models import log_model_run
    from testkit.service import register_staged

    running = start_ml_app("monitoring")
    base, tokens, workdir = running.base, running.tokens, running.workdir
    data = workdir / "data"
    run = log_model_run(
        f"sqlite:///{data / 'mlflow' / 'mlflow.db'}", str(data / "mlflow" / "artifacts"), "bench"
    )
    with httpx.Client(base_url=base, timeout=120, headers=tokens.header(Role.ENGINEER)) as http:
        for model, rate in MODELS.items():
            register_staged(http, model, run.run_id)
            http.post(
                f"/api/v1/ml/models/{model}/deploy", json={"strategy": "replace", "version": 1}
            ).raise_for_status()
            http.put(
                f"/api/v1/ml/models/{model}/monitoring/policy", json={"sample_rate": rate}
            ).raise_for_status()
    time.sleep(6)  # the replicas pick up the sample rates

    url = f"{base}/api/v1/ml/predict"
    viewer = tokens.header(Role.VIEWER)
    for model in MODELS:  # warm up: connections, model load
        run_round(url, {"model": model, "inputs": ROWS}, viewer, 100, args.clients)
    p50: dict[str, list[float]] = {m: [] for m in MODELS}
    p99: dict[str, list[float]] = {m: [] for m in MODELS}
    for round_no in range(1, args.rounds + 1):
        for model in MODELS:
            latencies = run_round(
                url, {"model": model, "inputs": ROWS}, viewer, args.requests, args.clients
            )
            p50[model].append(statistics.median(latencies))
            p99[model].append(percentile(latencies, 0.99))
            print(
                f"round {round_no} {model:15s} p50 {p50[model][-1]:6.2f} ms  "
                f"p99 {p99[model][-1]:6.2f} ms",
                flush=True,
            )
    time.sleep(3)  # the last batch reaches the disk
    log = PredictionLogReader(open_storage(StorageSettings(uri=str(data), cache_dir=data)))
    logged = len(log.window("bench-logged", 1, since=0))
    unlogged = len(log.window("bench-unlogged", 1, since=0))
    serve.shutdown()
    ray.shutdown()

    on, off = statistics.median(p50["bench-logged"]), statistics.median(p50["bench-unlogged"])
    print(
        f"\n{len(ROWS)} rows per request, {args.requests} requests x {args.rounds} rounds, "
        f"{args.clients} clients (medians over rounds)\n"
        f"  logging on  p50 {on:6.2f} ms  p99 {statistics.median(p99['bench-logged']):6.2f} ms "
        f"({logged:,} rows in the log)\n"
        f"  logging off p50 {off:6.2f} ms  p99 {statistics.median(p99['bench-unlogged']):6.2f} ms "
        f"({unlogged:,} rows in the log)\n"
        f"  ratio on/off: p50 {on / off:.3f}x (target <= 1.05)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
