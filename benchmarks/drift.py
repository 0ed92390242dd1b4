"""Drift computation on 1,000,000 rows x 20 features: ours against Evidently, same run.

Both compare the same current window (1,000,000 rows, 20 numeric features, two of them
shifted) with the same training data (200,000 rows). Ours compares the window with the
reference captured at training (`app.core.drift.capture`, timed separately: it runs once
per model version, in the training job); Evidently's `DataDriftPreset` takes the raw
reference each time (its default method for this size: normed Wasserstein per column).
Prints the best of `--repeats` wall times, the ratio and the columns each flagged
(target for ours: under 1 s on this machine's 2 cores). Then the false-alarm rate of our
thresholds: `--windows` seeded windows of `--window-rows` rows drawn from the training
distribution itself, every feature compared, alarms counted.

    .venv/bin/pip install -e '.[bench]'   # Evidently, only for this comparison
    .venv/bin/python benchmarks/drift.py [--rows 1000000] [--features 20] [--repeats 3]
"""

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's usage telemetry off

SHIFTED = ("f03", "f11")


def data(rows: int, features: int, seed: int, shift: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    columns = {}
    for j in range(features):
        name = f"f{j:02d}"
        values = rng.gamma(2.0 + j % 3, 1.0 + j, rows) if j % 2 else rng.normal(j, 1 + j, rows)
        if shift and name in SHIFTED:
            values = values + 0.5 * values.std()
        columns[name] = values
    return pd.DataFrame(columns)


def best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def evidently_drifted(report: Any) -> list[str]:
    """Column names Evidently flagged (its ValueDrift metrics past their thresholds)."""
    found = []
    for metric in report.dict()["metrics"]:
        config = metric.get("config") or {}
        if str(config.get("type", "")).endswith("ValueDrift"):
            if float(metric["value"]) >= float(config.get("threshold", 0.1)):
                found.append(str(config["column"]))
    return sorted(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reference-rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--window-rows", type=int, default=1000)
    args = parser.parse_args()

    from app.core.drift import capture, compare

    reference_frame = data(args.reference_rows, args.features, seed=0, shift=False)
    current = data(args.rows, args.features, seed=1, shift=True)
    columns = {name: current[name].to_numpy() for name in current.columns}

    capture_s, reference = best(
        lambda: capture({n: reference_frame[n].to_numpy() for n in reference_frame}), args.repeats
    )
    ours_s, results = best(lambda: compare(reference, columns), args.repeats)
    ours_flagged = sorted(r.feature for r in results if r.drifted)
    print(
        f"ours: capture of the reference ({args.reference_rows:,} rows) {capture_s:.3f} s; "
        f"drift over {args.rows:,} rows x {args.features} features {ours_s:.3f} s "
        f"(target < 1 s) flagged {ours_flagged}",
        flush=True,
    )
    alarms = 0
    for seed in range(100, 100 + args.windows):
        window = data(args.window_rows, args.features, seed=seed, shift=False)
        found = compare(reference, {n: window[n].to_numpy() for n in window.columns})
        alarms += sum(r.drifted for r in found)
    tests = args.windows * args.features
    print(
        f"false alarms: {alarms} of {tests} feature-windows ({alarms / tests:.2%}) over "
        f"{args.windows} seeded windows of {args.window_rows:,} rows from the training "
        "distribution",
        flush=True,
    )
    try:
        from evidently import Report
        from evidently.presets import DataDriftPreset
    except ImportError:
        print("evidently is not installed: .venv/bin/pip install -e '.[bench]'")
        return 1
    theirs_s, report = best(
        lambda: Report([DataDriftPreset()]).run(current, reference_frame), args.repeats
    )
    print(
        f"evidently DataDriftPreset: {theirs_s:.3f} s flagged {evidently_drifted(report)}",
        flush=True,
    )
    print(f"ratio ours/evidently: {ours_s / theirs_s:.3f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
