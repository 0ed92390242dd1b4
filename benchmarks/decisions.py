"""Decision quality through the running service: seeded scenarios of known ground truth,
driven over HTTP against real registered models of known behaviour, many runs each; the
rates printed next to their targets (PASS / MISS).

    .venv/bin/python benchmarks/decisions.py            # the full run (about an hour)
    .venv/bin/python benchmarks/decisions.py --quick    # a few runs of each, to try it

Scenarios (see testkit/decisions.py): A/A under continuous looks (false winners), A/B
with a known effect at the planned sample size (power), a 52/48 sample-ratio mismatch at
20,000 requests, canary A/A (false rollbacks), a canary with 3x the baseline's error
rate (rolled back, and after how many canary requests), stationary drift windows (false
alarms) and a shifted one. The service runs with its shipped defaults (A/B alpha 0.05,
canary false-rollback rate 0.01, drift alpha 0.01), except faster ticks and
`ab_test.minimum_effect` set to the effect the power scenario uses.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
from importlib.metadata import version
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.access import Role  # noqa: E402
from testkit.decisions import (  # noqa: E402
    Harness,
    ab_run,
    canary_run,
    drift_evaluations,
    live_reference,
    srm_run,
)

EFFECT = 0.15  # the documented effect of the power scenario (accuracy 0.60 vs 0.75)


def verdict(name: str, value: float, target: str, passed: bool) -> None:
    print(
        f"{name:58s} {value:10.4f}   target {target:14s} {'PASS' if passed else 'MISS'}", flush=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few runs of each scenario")
    parser.add_argument("--aa-runs", type=int, default=200)
    parser.add_argument("--power-runs", type=int, default=40)
    parser.add_argument("--canary-runs", type=int, default=100)
    parser.add_argument("--error-runs", type=int, default=10)
    parser.add_argument("--drift-windows", type=int, default=100)
    parser.add_argument(
        "--only",
        choices=("ab", "canary", "drift"),
        action="append",
        help="run only these scenario groups (repeatable; default: all)",
    )
    args = parser.parse_args()
    if args.quick:
        args.aa_runs, args.power_runs, args.canary_runs = 5, 3, 3
        args.error_runs, args.drift_windows = 2, 5
    os.environ.update(
        {
            "ML_SERVING__STATS_FLUSH_S": "0.2",
            "ML_SERVING__CANARY_TICK_S": "0.2",
            "ML_SERVING__AB_TEST__MINIMUM_EFFECT": str(EFFECT),
            "ML_MONITORING__REFERENCE_ROWS": "1000",
            "ML_MONITORING__EVALUATE_EVERY_S": "3600",
            "ML_MONITORING__LOG_FLUSH_S": "0.2",
        }
    )
    from benchmarks.ml_app import start_ml_app

    running = start_ml_app("decisions")
    tokens, data = running.tokens, running.workdir / "data"
    print(
        f"# {datetime.date.today()} {platform.node()} {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, ray {version('ray')}, mlflow {version('mlflow')}",
        flush=True,
    )
    with httpx.Client(
        base_url=running.base, timeout=120, headers=tokens.header(Role.ENGINEER)
    ) as http:
        harness = Harness(
            http,
            tokens.header(Role.VIEWER),
            tokens.header(Role.APPROVER),
            f"sqlite:///{data / 'mlflow' / 'mlflow.db'}",
            str(data / "mlflow" / "artifacts"),
            clients=6,
        )
        groups = {"ab": ab_scenarios, "canary": canary_scenarios, "drift": drift_scenarios}
        for name, scenarios in groups.items():
            if not args.only or name in args.only:
                scenarios(harness, args)


def ab_scenarios(harness: Harness, args: argparse.Namespace) -> None:
    rng = np.random.default_rng(100)
    a, b = harness.version("aa"), harness.version("aa")
    false_winners = 0
    for run in range(args.aa_runs):
        result = ab_run(harness, "aa", (a, b), {a: 0.7, b: 0.7}, rng, max_outcomes=300)
        false_winners += result.winner is not None
        print(
            f"  A/A run {run + 1}: winner {result.winner} at {result.outcomes}/arm",
            flush=True,
        )
    rate = false_winners / args.aa_runs
    verdict(
        f"A/A false-winner rate ({args.aa_runs} runs, looks every 50/arm)",
        rate,
        "<= 0.06",
        rate <= 0.06,
    )

    weak, strong = harness.version("power"), harness.version("power", weights=(-0.4, 0.9, 0.1, 0.2))
    truth = {weak: 0.60, strong: 0.75}
    probe = ab_run(harness, "power", (weak, strong), truth, rng, max_outcomes=100)
    planned = int(probe.verdict.get("planned_n") or 0)  # what the service plans for EFFECT
    found = 0
    for run in range(args.power_runs):
        result = ab_run(
            harness, "power", (weak, strong), truth, rng, max_outcomes=max(planned, 100)
        )
        found += result.winner == strong
        print(
            f"  A/B run {run + 1}: winner {result.winner} at {result.outcomes}/arm "
            f"(planned {planned})",
            flush=True,
        )
    power = found / args.power_runs
    verdict(
        f"A/B power, effect +{EFFECT} at the planned n ({planned}/arm)",
        power,
        ">= 0.80",
        power >= 0.8,
    )

    skewed = srm_run(harness, "srm", (harness.version("srm"), harness.version("srm")), 20_000, 0.52)
    flagged = skewed["status"] == "sample_ratio_mismatch"
    verdict(
        f"SRM flagged at 52/48, n=20,000 (p={skewed['srm_p_value']:.2g})",
        float(flagged),
        "1 (flagged)",
        flagged,
    )


def canary_scenarios(harness: Harness, args: argparse.Namespace) -> None:
    rng = np.random.default_rng(200)
    base = harness.version("canary", error_rate=0.05)
    same = harness.version("canary", error_rate=0.05)
    rollbacks = 0
    for run in range(args.canary_runs):
        result = canary_run(harness, "canary", base, same, rng)
        rollbacks += result.phase == "rolled_back"
        print(f"  canary A/A run {run + 1}: {result.phase} ({result.reason[:80]})", flush=True)
    rate = rollbacks / args.canary_runs
    verdict(
        f"canary A/A false-rollback rate ({args.canary_runs} runs)", rate, "<= 0.01", rate <= 0.01
    )

    worse = harness.version("canary", error_rate=0.15)  # 3x the baseline's 5%
    caught, requests = 0, []
    for run in range(args.error_runs):
        result = canary_run(harness, "canary", base, worse, rng)
        caught += result.phase == "rolled_back"
        requests.append(result.canary_requests)
        print(
            f"  canary 3x errors run {run + 1}: {result.phase} after "
            f"{result.canary_requests} canary requests",
            flush=True,
        )
    verdict(
        f"canary with 3x errors rolled back (median {statistics.median(requests):.0f} "
        "canary requests)",
        caught / args.error_runs,
        "1.0",
        caught == args.error_runs,
    )


def drift_scenarios(harness: Harness, args: argparse.Namespace) -> None:
    rng = np.random.default_rng(300)
    version = harness.version("drift")
    harness.deploy("drift", strategy="replace", version=version)
    live_reference(harness, "drift", rng, 1000)
    quiet = drift_evaluations(
        harness, "drift", rng, windows=args.drift_windows, rows_per_window=500, window_s=1.5
    )
    alarms = sum(bool(found) for found in quiet) / len(quiet)
    verdict(
        f"drift false alarms per evaluation ({len(quiet)} stationary windows)",
        alarms,
        "<= 0.01",
        alarms <= 0.01,
    )
    shifted = drift_evaluations(
        harness, "drift", rng, windows=3, rows_per_window=500, window_s=1.5, shift=3.0
    )
    detected = sum("tenure_months" in found for found in shifted) / len(shifted)
    verdict("drift detected on a tenure shift (3 windows)", detected, "1.0", detected == 1.0)


if __name__ == "__main__":
    main()
