"""POST /api/v1/ml/predict through the whole service against a minimal Serve app.

One local Ray cluster, one Serve instance, two applications side by side:

- service:  the `ml` application as `serve_config.yaml` builds it (auth, validation, local
            routing, stats recording, prediction references, multiplexed and batched
            model server), with the model deployed through the API;
- minimal:  a FastAPI ingress deployment calling a model deployment that holds the same
            MLflow model (one handle hop, no auth, no routing, no recording).

Rounds alternate between them; each round sends the same requests (one row each) from
`--clients` concurrent clients. Prints p50/p99 latency and throughput per app and the
ratios service/minimal. Target: p50 at most 1.15x and throughput at least 0.9x.

On `--profile prod` the service runs the production profile on a private local stack
(PostgreSQL, S3, Redis: benchmarks/ml_app.py); the minimal app loads the same model from
the same MLflow stores.

    .venv/bin/python benchmarks/predict.py [--requests 600] [--rounds 3] [--clients 8]
                                           [--profile embedded|prod]
"""

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ml_app import RunningApp, add_profile_option, running_ml_app  # noqa: E402

ROW = [0.1, 0.2, 0.3, 0.4]


def minimal_app(model_uri: str, tracking_uri: str) -> Any:
    """FastAPI ingress -> model deployment holding the MLflow model."""
    from ray import serve

    @serve.deployment(name="MinimalModel", ray_actor_options={"num_cpus": 0.5})
    class MinimalModel:
        def __init__(self) -> None:
            import mlflow

            mlflow.set_tracking_uri(tracking_uri)
            self.model = mlflow.pyfunc.load_model(model_uri)

        async def predict(self, rows: list[list[float]]) -> list[Any]:
            import numpy as np

            output = self.model.predict(np.asarray(rows, dtype="float32"))
            result: list[Any] = output.tolist()
            return result

    app = FastAPI()

    @serve.deployment(name="MinimalIngress", ray_actor_options={"num_cpus": 0.25})
    @serve.ingress(app)
    class MinimalIngress:
        def __init__(self, model: Any) -> None:
            self.model = model

        @app.post("/predict")
        async def predict(self, request: Request) -> dict[str, Any]:
            body = await request.json()
            return {"predictions": await self.model.predict.remote(body["inputs"])}

    return MinimalIngress.bind(MinimalModel.bind())


def run_round(
    url: str, body: dict[str, Any], headers: dict[str, str], requests: int, clients: int
) -> tuple[list[float], float]:
    latencies: list[float] = []
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=clients * 2)) as http:

        def one(i: int) -> float:
            payload = dict(body)
            if "request_key" in payload:
                payload["request_key"] = f"k{i}"
            started = time.perf_counter()
            response = http.post(url, json=payload, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(response.text)
            return (time.perf_counter() - started) * 1000

        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            latencies = list(pool.map(one, range(requests)))
        elapsed = time.perf_counter() - started
    return latencies, requests / elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    add_profile_option(parser)
    args = parser.parse_args()

    with running_ml_app("predict", args.profile) as running:
        print(running.header(), flush=True)
        results = measure(running, args)
    summarize(results, running.header(), args)
    return 0


def measure(running: RunningApp, args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """Deploy the model through the API and beside it in the minimal app, then alternate
    rounds between them."""
    from ray import serve

    from app.core.access import Role
    from testkit.models import log_model_run
    from testkit.service import register_staged

    base, tokens = running.base, running.tokens
    tracking = running.settings.mlflow.tracking_uri
    run = log_model_run(tracking, running.settings.mlflow.artifact_root, "bench")
    auth = tokens.header(Role.ENGINEER)
    with httpx.Client(base_url=base, timeout=120, headers=auth) as http:
        number = register_staged(http, "bench", run.run_id)
        http.post("/api/v1/ml/models/bench/deploy", json={"strategy": "replace", "version": number})
    serve.run(
        minimal_app(f"models:/bench/{number}", tracking), name="minimal", route_prefix="/minimal"
    )
    time.sleep(2)

    ways = {
        "minimal": (f"{base}/minimal/predict", {"inputs": [ROW]}, {}),
        "service": (
            f"{base}/api/v1/ml/predict",
            {"model": "bench", "inputs": [ROW], "request_key": "k"},
            tokens.header(Role.VIEWER),
        ),
    }
    for url, body, headers in ways.values():  # warm up: connections, model load, caches
        run_round(url, body, headers, 100, args.clients)

    results: dict[str, dict[str, list[float]]] = {
        w: {"p50": [], "p99": [], "rps": []} for w in ways
    }
    for round_no in range(1, args.rounds + 1):
        for name, (url, body, headers) in ways.items():
            latencies, rps = run_round(url, body, headers, args.requests, args.clients)
            results[name]["p50"].append(statistics.median(latencies))
            results[name]["p99"].append(percentile(latencies, 0.99))
            results[name]["rps"].append(rps)
            print(
                f"round {round_no} {name:8s} p50 {statistics.median(latencies):6.1f} ms  "
                f"p99 {percentile(latencies, 0.99):6.1f} ms  {rps:6.1f} req/s",
                flush=True,
            )
    return results


def summarize(
    results: dict[str, dict[str, list[float]]], header: str, args: argparse.Namespace
) -> None:
    med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}
    svc, mini = med["service"], med["minimal"]
    print(
        f"\n{header}\none row per request, {args.requests} requests x {args.rounds} rounds, "
        f"{args.clients} clients (medians over rounds)"
    )
    for name in ("minimal", "service"):
        m = med[name]
        print(
            f"  {name:8s} p50 {m['p50']:6.1f} ms   p99 {m['p99']:6.1f} ms   {m['rps']:6.1f} req/s"
        )
    print(
        f"  ratio service/minimal: p50 {svc['p50'] / mini['p50']:.2f}x (target <= 1.15)   "
        f"p99 {svc['p99'] / mini['p99']:.2f}x   throughput {svc['rps'] / mini['rps']:.2f}x "
        "(target >= 0.9)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
