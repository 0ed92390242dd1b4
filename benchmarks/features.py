"""POST /api/v1/ml/features/serve against Feast's own feature server on the same repository.

One local Ray cluster runs the `ml` application as `serve_config.yaml` builds it, behind
the HTTP ingress `scripts/serve` uses (Serve's HAProxy): auth, validation, the catalog
check. Beside it `feast serve` (Feast's HTTP feature server, one worker) reads the same
registry and online store: the embedded file registry and SQLite, or with `--profile prod`
the production config (feature_store.prod.yaml: SQL registry on PostgreSQL, Redis) on the
service's private local stack (benchmarks/ml_app.py). Rounds
alternate between them; each sends the same lookups (the `churn_v1` feature service, 1 or
100 customers) from one client, one request at a time. Prints p50/p99 per server and the
ratio ours/Feast's (target: p50 at most 0.8x), and the floor: a trivial GET through the
same ingress and replica, which no feature path can go below.

    .venv/bin/python benchmarks/features.py [--requests 300] [--rounds 3] [--profile embedded|prod]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import report  # noqa: E402
from benchmarks.ml_app import RunningApp, add_profile_option, running_ml_app  # noqa: E402


def timed(http: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str]) -> float:
    started = time.perf_counter()
    response = http.post(url, json=body, headers=headers)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"{url}: {response.status_code} {response.text[:500]}")
    return elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_for(url: str, server: subprocess.Popen[bytes], log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"{url}: the server exited ({server.returncode}); see {log}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url}: no answer in {seconds:.0f} s; see {log}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    add_profile_option(parser)
    args = parser.parse_args()

    from app.core.access import Role

    print(report.header("ray", "feast", "fastapi"), flush=True)
    with running_ml_app("features", args.profile) as running:
        print(running.header(), flush=True)
        with httpx.Client(base_url=running.base, timeout=120) as http:
            done = http.post(
                "/api/v1/ml/features/materialize", headers=running.tokens.header(Role.ENGINEER)
            )
            done.raise_for_status()
        with feast_serve(running) as feast_port:
            results = compare(running.base, feast_port, running.tokens.header(Role.VIEWER), args)
    print(f"\n{running.header()}")
    for entities, (ours, theirs, _) in results.items():
        print(
            f"{entities:>3} entit{'y' if entities == 1 else 'ies'}: service p50 {ours[0]:6.2f} ms "
            f"p99 {ours[1]:6.2f} ms | feast serve p50 {theirs[0]:6.2f} ms p99 {theirs[1]:6.2f} ms"
        )
    # the target holds when it holds in three consecutive runs of this script
    one = results[1]
    report.at_most("p50 service / feast serve, 1 entity", one[0][0] / one[1][0], 0.8)
    report.at_most("  worst round's ratio, 1 entity", one[2], 0.8)
    hundred = results[100]
    print(f"  100 entities p50 ratio {hundred[0][0] / hundred[1][0]:.2f}x (no target)")
    return 0


@contextmanager
def feast_serve(running: RunningApp) -> Iterator[int]:
    """`feast serve` on the service's feature repository and Feast config (the profile's:
    the same registry and online store), on a free port; stopped afterwards."""
    from testkit.service import free_port

    settings = running.settings
    features = settings.features
    # what `${ML_FEAST_DIR}` names in the service: the embedded registry and online store,
    # and the offline files' local directory (with an S3 storage, the node-local cache)
    if settings.storage.uri.startswith("s3://"):
        feast_dir = settings.storage.cache_dir / "feast"
    else:
        feast_dir = features.data_dir
    port = free_port()
    log = running.workdir / "feast-serve.log"
    with open(log, "wb") as output:
        feast = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "feast"),
                "-c",
                str(features.repo_dir),
                "-f",
                str(features.repo_dir / features.config_file),
                "serve",
                "-p",
                str(port),
                "--no-access-log",
            ],
            env={**os.environ, "ML_FEAST_DIR": str(feast_dir)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(f"http://127.0.0.1:{port}/health", feast, log)
        yield port
    finally:
        feast.terminate()
        feast.wait(30)


def compare(
    base: str, feast_port: int, viewer: dict[str, str], args: argparse.Namespace
) -> dict[int, tuple[tuple[float, float], tuple[float, float], float]]:
    """{entities: ((service p50, p99), (feast p50, p99), the worst round's p50 ratio)}"""
    results = {}
    with httpx.Client(timeout=60) as http:
        floor = []
        for _ in range(args.requests):  # the same hops without a feature read
            started = time.perf_counter()
            http.get(f"{base}/api/v1/ml/health/live").raise_for_status()
            floor.append((time.perf_counter() - started) * 1000)
        print(
            f"floor: GET /health/live, same ingress, p50 {statistics.median(floor):.2f} ms",
            flush=True,
        )
        for entities in (1, 100):
            ids = list(range(entities))
            ours_body = {
                "feature_service": "churn_v1",
                "entities": [{"customer_id": i} for i in ids],
            }
            theirs_body = {"feature_service": "churn_v1", "entities": {"customer_id": ids}}
            ways = {
                "service": (f"{base}/api/v1/ml/features/serve", ours_body, viewer),
                "feast": (f"http://127.0.0.1:{feast_port}/get-online-features", theirs_body, {}),
            }
            for url, body, headers in ways.values():  # warm up
                for _ in range(30):
                    timed(http, url, body, headers)
            p50: dict[str, list[float]] = {w: [] for w in ways}
            p99: dict[str, list[float]] = {w: [] for w in ways}
            for round_no in range(1, args.rounds + 1):
                for name, (url, body, headers) in ways.items():
                    latencies = [timed(http, url, body, headers) for _ in range(args.requests)]
                    p50[name].append(statistics.median(latencies))
                    p99[name].append(percentile(latencies, 0.99))
                    print(
                        f"{entities:>3} entities round {round_no} {name:8s} "
                        f"p50 {p50[name][-1]:6.2f} ms  p99 {p99[name][-1]:6.2f} ms",
                        flush=True,
                    )
            results[entities] = (
                (statistics.median(p50["service"]), statistics.median(p99["service"])),
                (statistics.median(p50["feast"]), statistics.median(p99["feast"])),
                max(o / t for o, t in zip(p50["service"], p50["feast"], strict=True)),
            )
    return results


if __name__ == "__main__":
    raise SystemExit(main())
