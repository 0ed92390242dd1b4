"""POST /experiments/{id}/runs (one run, 50 metrics) against MLflow's own client, same store.

Starts the service with `scripts/serve` on a temp data directory, then alternates rounds
of the two ways to log the same run:

- service:  HTTP POST through Serve's proxy to the ingress (validation, auth, MLflow writes,
            read-back of the stored run);
- baseline: `MlflowClient` on the same SQLite store, in this process: create_run +
            log_batch + set_terminated (no HTTP, no read-back).

Prints latency (p50, p95) and throughput with 8 concurrent clients for each, and the
ratios service/baseline. Machines here are noisy: compare ratios, not absolute times.

    .venv/bin/python benchmarks/log_run.py [--runs 60] [--rounds 3] [--clients 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param  # noqa: E402

from app.core.access import Role  # noqa: E402
from benchmarks import report  # noqa: E402
from testkit.auth import Tokens  # noqa: E402
from testkit.service import Service  # noqa: E402

METRICS = 50
PARAMS = {"lr": "0.01", "hidden": "64", "optimizer": "adam"}


def payload(i: int) -> dict[str, object]:
    now_ms = int(time.time() * 1000)
    return {
        "name": f"bench-{i}",
        "params": PARAMS,
        "metrics": [
            {"key": f"metric_{k}", "value": k * 0.01 + i, "step": 0, "timestamp": now_ms}
            for k in range(METRICS)
        ],
    }


def timed(fn: Callable[[int], None], runs: int, clients: int) -> tuple[list[float], float]:
    """Latencies of `runs` sequential calls (ms), and calls/s with `clients` in parallel."""
    latencies = []
    for i in range(runs):
        started = time.perf_counter()
        fn(i)
        latencies.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(fn, range(runs)))
    return latencies, runs / (time.perf_counter() - started)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=60, help="runs per way and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()

    print(report.header("ray", "mlflow", "fastapi", "httpx"), flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-log-run-"))
    tokens = Tokens()
    service = Service(workdir)
    print(f"starting the service (data in {service.data_dir}) ...", flush=True)
    service.start({"ML_AUTH__TOKENS": json.dumps(tokens.entries()), "ML_LOG_LEVEL": "WARNING"})
    try:
        return run(service, tokens, args)
    finally:
        service.stop()


def run(service: Service, tokens: Tokens, args: argparse.Namespace) -> int:
    http = httpx.Client(
        base_url=service.url,
        headers=tokens.header(Role.ENGINEER),
        timeout=60,
        limits=httpx.Limits(max_connections=args.clients * 2),
    )
    experiment = http.post("/api/v1/ml/experiments", json={"name": "bench-service"}).json()
    url = f"/api/v1/ml/experiments/{experiment['id']}/runs"

    mlflow = MlflowClient(f"sqlite:///{service.data_dir / 'mlflow' / 'mlflow.db'}")
    baseline_experiment = mlflow.create_experiment(
        "bench-baseline", artifact_location=str(service.data_dir / "mlflow" / "artifacts" / "b")
    )

    def via_service(i: int) -> None:
        response = http.post(url, json=payload(i))
        if response.status_code != 201:
            raise RuntimeError(response.text)

    def via_mlflow(i: int) -> None:
        body = payload(i)
        run = mlflow.create_run(baseline_experiment, run_name=str(body["name"]))
        metrics = [
            Metric(m["key"], m["value"], m["timestamp"], m["step"])  # type: ignore[index]
            for m in body["metrics"]
        ]  # type: ignore[union-attr]
        params = [Param(k, v) for k, v in PARAMS.items()]
        mlflow.log_batch(run.info.run_id, metrics=metrics, params=params, synchronous=True)
        mlflow.set_terminated(run.info.run_id)

    for fn in (via_service, via_mlflow):  # warm up connections, caches, JIT-less paths
        for i in range(5):
            fn(i)

    results: dict[str, dict[str, list[float]]] = {
        name: {"p50": [], "p95": [], "rps": []} for name in ("service", "baseline")
    }
    for round_no in range(1, args.rounds + 1):
        for name, fn in (("baseline", via_mlflow), ("service", via_service)):
            latencies, rps = timed(fn, args.runs, args.clients)
            results[name]["p50"].append(statistics.median(latencies))
            results[name]["p95"].append(percentile(latencies, 0.95))
            results[name]["rps"].append(rps)
            print(
                f"round {round_no} {name:8s} p50 {statistics.median(latencies):7.1f} ms  "
                f"p95 {percentile(latencies, 0.95):7.1f} ms  {rps:6.1f} runs/s",
                flush=True,
            )

    med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}
    print()
    print(
        f"one run with {METRICS} metrics, {args.runs} runs x {args.rounds} rounds, "
        f"{args.clients} clients for throughput (medians over rounds)"
    )
    for name in ("baseline", "service"):
        m = med[name]
        print(
            f"  {name:8s} p50 {m['p50']:7.1f} ms   p95 {m['p95']:7.1f} ms   {m['rps']:6.1f} runs/s"
        )
    svc, base = med["service"], med["baseline"]
    latency = f"p50 {svc['p50'] / base['p50']:.2f}x   p95 {svc['p95'] / base['p95']:.2f}x"
    print(f"  latency ratio service/baseline:    {latency}")
    report.at_most("p50 service / MlflowClient", svc["p50"] / base["p50"], 1.3)
    report.at_least("throughput service / MlflowClient", svc["rps"] / base["rps"], 0.8)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
