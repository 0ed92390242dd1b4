"""A soak: a bounded, fixed-rate load for minutes, with the memory of every Ray process.

One local Ray cluster runs the `ml` application as `serve_config.yaml` builds it (behind
Serve's HAProxy ingress, `benchmarks/ml_app.py`). Two versions of one model are deployed
as a 50/50 A/B test and the feature store is materialized; then Locust (headless, on
loopback, `benchmarks/soak_locustfile.py`) runs `--users` users at `--rate` requests per
second each: predict with sticky keys, feedback on one prediction in four, feature
lookups. Every 10 s the resident memory (RSS) of every Ray process of this cluster is
sampled. It prints the requests and errors per kind, and the memory growth after the
warm-up: a least-squares line through the total RSS of the samples after `--warmup`,
from its value at the warm-up's end to its value at the end, in percent (target: under
5%, with 0 errors); and the three processes that grew most.

Not in CI (it runs for minutes on purpose):

    .venv/bin/pip install -e '.[bench]'   # Locust
    .venv/bin/python benchmarks/soak.py [--minutes 10] [--warmup 120] [--users 8] [--rate 2]
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
MODEL = "soak"
SAMPLE_S = 10.0


def ray_processes(exclude: int | None = None) -> dict[int, str]:
    """The processes of this cluster (`ray.init` here started them: GCS, raylet, workers,
    replicas, HAProxy are all descendants of this process), by pid, without `exclude`'s
    tree (the load generator)."""
    import psutil

    skip = set()
    if exclude is not None:
        try:
            load = psutil.Process(exclude)
            skip = {exclude, *(c.pid for c in load.children(recursive=True))}
        except psutil.Error:
            pass
    found = {}
    for child in psutil.Process(os.getpid()).children(recursive=True):
        if child.pid in skip:
            continue
        try:
            found[child.pid] = " ".join(child.cmdline())[:80]
        except psutil.Error:
            continue
    return found


def sample(pids: dict[int, str]) -> dict[int, int]:
    """RSS in bytes of each process still alive."""
    import psutil

    sizes = {}
    for pid in pids:
        try:
            sizes[pid] = psutil.Process(pid).memory_info().rss
        except psutil.Error:
            continue
    return sizes


def slope_percent(points: list[tuple[float, float]]) -> float:
    """Growth of the least-squares line through (t, value) over the points' span, in
    percent of its starting value."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / var if var else 0.0
    start, end = points[0][0], points[-1][0]
    at_start = mean_v + slope * (start - mean_t)
    return 100.0 * slope * (end - start) / at_start


def prepare(base: str, tokens: object, data: Path) -> None:
    """Two staged versions deployed as a 50/50 A/B test; the feature store materialized."""
    from app.core.access import Role
    from testkit.models import log_model_run
    from testkit.service import register_staged

    tracking, artifacts = f"sqlite:///{data / 'mlflow' / 'mlflow.db'}", data / "mlflow"
    engineer = tokens.header(Role.ENGINEER)  # type: ignore[attr-defined]
    with httpx.Client(base_url=base, timeout=300, headers=engineer) as http:
        versions = [
            register_staged(
                http, MODEL, log_model_run(tracking, str(artifacts / "a"), "soak", seed=s).run_id
            )
            for s in (1, 2)
        ]
        variants = [{"version": v, "weight": 50} for v in versions]
        deployed = http.post(
            f"/api/v1/ml/models/{MODEL}/deploy", json={"strategy": "ab", "variants": variants}
        )
        deployed.raise_for_status()
        http.post("/api/v1/ml/features/materialize").raise_for_status()
        row = {"model": MODEL, "inputs": [[0.1, 0.2, 0.3, 0.4]]}
        deadline = time.monotonic() + 60
        while http.post("/api/v1/ml/predict", json=row).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the A/B deployment never answered")
            time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds not in the slope")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--rate", type=float, default=2.0, help="requests/s per user")
    parser.add_argument(
        "--locust-python",
        default=sys.executable,
        help="the Python that has Locust (default: this one, with the bench extra)",
    )
    args = parser.parse_args()

    from app.core.access import Role
    from benchmarks.ml_app import running_ml_app

    with running_ml_app("soak") as running:
        prepare(running.base, running.tokens, running.workdir / "data")
        pids = ray_processes()
        out = Path(tempfile.mkdtemp(prefix="soak-"))
        env = {
            **os.environ,
            "SOAK_TOKEN": running.tokens.by_role[Role.VIEWER],
            "SOAK_ENGINEER_TOKEN": running.tokens.by_role[Role.ENGINEER],
            "SOAK_MODEL": MODEL,
            "SOAK_RATE": str(args.rate),
        }
        locustfile = ROOT / "benchmarks" / "soak_locustfile.py"
        command = [
            args.locust_python, "-m", "locust", "-f", str(locustfile),
            "--headless", "--users", str(args.users), "--spawn-rate", str(args.users),
            "--run-time", f"{int(args.minutes * 60)}s", "--host", running.base,
            "--csv", str(out / "soak"), "--only-summary", "--loglevel", "WARNING",
        ]  # fmt: skip
        samples: list[tuple[float, dict[int, int]]] = []
        started = time.monotonic()
        load = subprocess.Popen(command, env=env, cwd=ROOT)
        while load.poll() is None:
            pids.update(ray_processes(exclude=load.pid))  # replicas that started since
            samples.append((time.monotonic() - started, sample(pids)))
            time.sleep(SAMPLE_S)
        load.wait()
        report(samples, pids, out / "soak_stats.csv", args)
    return 0


def report(
    samples: list[tuple[float, dict[int, int]]],
    names: dict[int, str],
    stats_file: Path,
    args: argparse.Namespace,
) -> None:
    with stats_file.open() as handle:
        rows = list(csv.DictReader(handle))
    print(f"soak: {args.minutes:g} min, {args.users} users x {args.rate:g} req/s, on loopback")
    for row in rows:
        print(
            f"  {row['Name']:<12} requests {int(row['Request Count']):>7}  "
            f"errors {int(row['Failure Count']):>5}  p50 {row['50%']} ms  p99 {row['99%']} ms"
        )
    after = [(t, sum(sizes.values())) for t, sizes in samples if t >= args.warmup]
    if len(after) < 3:
        print("memory: too few samples after the warm-up for a slope")
        return
    print(
        f"memory: {len(samples)} samples of {len(names)} Ray processes; total RSS "
        f"{after[0][1] / 2**20:.0f} MiB after the warm-up, {after[-1][1] / 2**20:.0f} MiB at "
        f"the end; growth after the warm-up (least squares): {slope_percent(after):+.2f}% "
        "(target: under 5%)"
    )
    growth = []
    for pid, name in names.items():
        points = [(t, sizes[pid]) for t, sizes in samples if t >= args.warmup and pid in sizes]
        if len(points) >= 3:
            growth.append((slope_percent(points), points[-1][1], name))
    for percent, rss, name in sorted(growth, reverse=True)[:3]:
        print(f"  grew most: {percent:+.2f}% ({rss / 2**20:.0f} MiB) {name}")


if __name__ == "__main__":
    sys.exit(main())
