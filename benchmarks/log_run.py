"""POST /experiments/{id}/runs (one run, 50 metrics) against MLflow's own client, same store.

Starts the service with `scripts/serve` on a temp data directory, then, in each round,
measures the two ways to log the same run:

- service:  HTTP POST through Serve's proxy to the ingress (validation, auth, MLflow writes);
- baseline: `MlflowClient` on the same SQLite store, in this process: create_run +
            log_batch + set_terminated (no HTTP).

Latency (the target's p50): `--runs` pairs of calls, one of each way, interleaved call by
call (the order flips every pair), so both ways see the same machine: on these noisy
machines the speed drifts within a minute. Each way's p50 is also split by the call just
before (one of its own way, or of the other: a call after the other way's is 1-2 ms
slower, see README), and the p50 of `--runs` calls of each way back to back is printed
too, without a target.

Throughput: `--burst` runs with `--clients` in parallel, each way in turn, on a pool of
client threads and connections kept across rounds (a short burst mostly measures its own
ramp-up).

Prints p50, p95 and throughput of each way, and the ratios service/baseline. Machines here
are noisy: compare ratios, not absolute times.

    .venv/bin/python benchmarks/log_run.py [--runs 100] [--burst 300] [--rounds 3] [--clients 8]
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
from typing import Any, cast

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


def back_to_back(fn: Callable[[int], None], runs: int) -> list[float]:
    """Latencies (ms) of `runs` calls of one way, one after the other."""
    latencies = []
    for i in range(runs):
        started = time.perf_counter()
        fn(i)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def paired(
    service: Callable[[int], None], baseline: Callable[[int], None], pairs: int
) -> dict[Callable[[int], None], dict[str, list[float]]]:
    """Latencies (ms) of `pairs` calls of each way, interleaved call by call, all of them
    and split by what came just before: the order flips every pair (B S, S B, B S...),
    so a pair's first call follows one of its own way and its second one of the other."""
    times: dict[Callable[[int], None], dict[str, list[float]]] = {
        fn: {"all": [], "after_own": [], "after_other": []} for fn in (service, baseline)
    }
    for i in range(pairs):
        for position, fn in enumerate((service, baseline) if i % 2 else (baseline, service)):
            started = time.perf_counter()
            fn(i)
            elapsed = (time.perf_counter() - started) * 1000
            times[fn]["all"].append(elapsed)
            if i:
                times[fn]["after_other" if position else "after_own"].append(elapsed)
    return times


def throughput(fn: Callable[[int], None], runs: int, pool: ThreadPoolExecutor) -> float:
    """Calls/s of `runs` calls spread over `pool`'s threads."""
    started = time.perf_counter()
    list(pool.map(fn, range(runs)))
    return runs / (time.perf_counter() - started)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100, help="latency: pairs per round")
    parser.add_argument("--burst", type=int, default=300, help="throughput: runs per burst")
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
        points = cast(list[dict[str, Any]], body["metrics"])
        metrics = [Metric(m["key"], m["value"], m["timestamp"], m["step"]) for m in points]
        params = [Param(k, v) for k, v in PARAMS.items()]
        mlflow.log_batch(run.info.run_id, metrics=metrics, params=params, synchronous=True)
        mlflow.set_terminated(run.info.run_id)

    pool = ThreadPoolExecutor(args.clients)
    for fn in (via_service, via_mlflow):  # warm up connections, caches and the client threads
        throughput(fn, args.clients * 4, pool)

    results: dict[str, dict[str, list[float]]] = {
        name: {
            "p50": [],
            "p95": [],
            "rps": [],
            "p50_back_to_back": [],
            "p50_after_own": [],
            "p50_after_other": [],
        }
        for name in ("service", "baseline")
    }
    ways = {"service": via_service, "baseline": via_mlflow}
    for round_no in range(1, args.rounds + 1):
        latencies = paired(via_service, via_mlflow, args.runs)
        for name, fn in ways.items():
            results[name]["p50"].append(statistics.median(latencies[fn]["all"]))
            results[name]["p95"].append(percentile(latencies[fn]["all"], 0.95))
            for after in ("after_own", "after_other"):
                results[name][f"p50_{after}"].append(statistics.median(latencies[fn][after]))
        for name, fn in list(ways.items())[:: 1 if round_no % 2 else -1]:  # who goes first flips
            results[name]["p50_back_to_back"].append(statistics.median(back_to_back(fn, args.runs)))
            results[name]["rps"].append(throughput(fn, args.burst, pool))
        for name in ways:
            r = {k: v[-1] for k, v in results[name].items()}
            print(
                f"round {round_no} {name:8s} p50 {r['p50']:7.1f} ms  p95 {r['p95']:7.1f} ms  "
                f"{r['rps']:6.1f} runs/s   (p50 after its own way {r['p50_after_own']:.1f}, "
                f"after the other {r['p50_after_other']:.1f}; back to back "
                f"{r['p50_back_to_back']:.1f} ms)",
                flush=True,
            )
    pool.shutdown()

    med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}
    print()
    print(
        f"one run with {METRICS} metrics, {args.rounds} rounds of {args.runs} interleaved "
        f"pairs, and of {args.burst} runs with {args.clients} clients (medians over rounds)"
    )
    for name in ("baseline", "service"):
        m = med[name]
        print(
            f"  {name:8s} p50 {m['p50']:7.1f} ms   p95 {m['p95']:7.1f} ms   {m['rps']:6.1f} runs/s"
            f"   p50 after its own way {m['p50_after_own']:.1f}, after the other "
            f"{m['p50_after_other']:.1f}, back to back {m['p50_back_to_back']:.1f} ms"
        )
    svc, base = med["service"], med["baseline"]
    latency = f"p50 {svc['p50'] / base['p50']:.2f}x   p95 {svc['p95'] / base['p95']:.2f}x"
    print(f"  latency ratio service/baseline:    {latency}")
    print(
        "  back to back, each way's calls in a row:  p50 "
        f"{svc['p50_back_to_back'] / base['p50_back_to_back']:.2f}x (no target)"
    )
    report.at_most("p50 service / MlflowClient", svc["p50"] / base["p50"], 1.3)
    report.at_least("throughput service / MlflowClient", svc["rps"] / base["rps"], 0.8)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
