"""Decision quality through the running service (`scripts/serve`), CI-sized: every
scenario of `benchmarks/decisions.py` once, with seeded traffic of known ground truth and
real registered models of known behaviour; the verdicts' directions and states are
asserted, never timings.

The service runs with error rates of 1e-4 (A/B false winners, canary false rollbacks,
drift false alarms), so that an assertion on one run holds but for a chance of about one
in ten thousand; the benchmark measures the rates at the shipped defaults.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.core.access import Role
from testkit.auth import Tokens
from testkit.decisions import (
    Harness,
    ab_run,
    canary_run,
    drift_evaluations,
    live_reference,
    srm_run,
)
from testkit.service import Service

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RARE = "0.0001"


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    service = Service(tmp_path_factory.mktemp("decisions"))
    tokens = Tokens()
    service.start(
        {
            "ML_AUTH__TOKENS": json.dumps(tokens.entries()),
            "ML_SERVING__STATS_FLUSH_S": "0.2",
            "ML_SERVING__CANARY_TICK_S": "0.2",
            "ML_SERVING__AB_TEST__ALPHA": RARE,
            "ML_SERVING__AB_TEST__MINIMUM_EFFECT": "0.3",
            "ML_SERVING__CANARY__ALPHA": RARE,
            "ML_MONITORING__ALPHA": RARE,
            "ML_MONITORING__REFERENCE_ROWS": "400",
            "ML_MONITORING__EVALUATE_EVERY_S": "3600",
            "ML_MONITORING__LOG_FLUSH_S": "0.2",
            "ML_MONITORING__POLICY_POLL_S": "0.5",
        }
    )
    os.environ["MLFLOW_TRACKING_TOKEN"] = tokens.by_role[Role.ENGINEER]
    try:
        with httpx.Client(
            base_url=service.url, timeout=120, headers=tokens.header(Role.ENGINEER)
        ) as http:
            yield Harness(
                http,
                tokens.header(Role.VIEWER),
                tokens.header(Role.APPROVER),
                f"{service.url}/mlflow",
                str(Path(service.data_dir) / "mlflow" / "artifacts"),
            )
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        service.stop()


def test_ab_verdicts_aa_known_effect_and_sample_ratio_mismatch(harness: Harness) -> None:
    rng = np.random.default_rng(1)
    a, b = harness.version("ab"), harness.version("ab")  # the same model twice
    aa = ab_run(harness, "ab", (a, b), {a: 0.7, b: 0.7}, rng, max_outcomes=300)
    assert aa.winner is None and aa.verdict["status"] == "no_difference_yet", aa
    assert aa.verdict["srm_ok"] and aa.verdict["planned_n"] > 0

    better = harness.version("ab", weights=(-0.4, 0.9, 0.1, 0.2))
    effect = ab_run(harness, "ab", (a, better), {a: 0.55, better: 0.95}, rng, max_outcomes=600)
    assert effect.winner == better, effect
    low, high = effect.verdict["confidence_interval"]
    assert 0 < low <= effect.verdict["effect"] <= high  # the effect is ~ +0.4
    assert effect.verdict["p_value"] <= float(RARE)

    skewed = srm_run(harness, "ab", (a, b), requests=1000, share=0.6)
    assert skewed["status"] == "sample_ratio_mismatch" and not skewed["srm_ok"], skewed


def test_canaries_complete_when_healthy_and_roll_back_on_each_regression(
    harness: Harness,
) -> None:
    rng = np.random.default_rng(2)
    base = harness.version("canary", error_rate=0.05)
    same = harness.version("canary", error_rate=0.05)
    healthy = canary_run(harness, "canary", base, same, rng)
    assert healthy.phase == "completed", healthy

    errors = harness.version("canary", error_rate=0.5)
    failed = canary_run(harness, "canary", base, errors, rng)
    assert (failed.phase, "error rate" in failed.reason) == ("rolled_back", True), failed

    # well beyond 1.5x the baseline's p95 even when 4 clients on 2 busy cores spread the
    # baseline's latency (80 ms was not, in one CI run: the rule allows it, and it completed)
    slow = harness.version("canary", delay_ms=400)
    slower = canary_run(harness, "canary", base, slow, rng)
    assert (slower.phase, "slower" in slower.reason) == ("rolled_back", True), slower

    # Labels join their predictions a moment after the answers (flushes, the traffic
    # actor's tick), and a quality test short of its minimum outcomes does not hold a step:
    # with a 1 s bake time a busy machine could end both steps before the labels came in
    # and complete the rollout. A 5 s bake gives the labels that time, as a production
    # bake time (60 s by default) does.
    worse = harness.version("canary", weights=(-0.4, 0.9, 0.1, 0.2))
    quality = canary_run(
        harness, "canary", base, worse, rng, accuracy={base: 0.95, worse: 0.3}, bake_time_s=5.0
    )
    assert (quality.phase, "quality" in quality.reason) == ("rolled_back", True), quality


def test_drift_stays_quiet_on_stationary_traffic_and_flags_a_shift(harness: Harness) -> None:
    rng = np.random.default_rng(3)
    version = harness.version("drift")  # a notebook-style run: no training reference
    harness.deploy("drift", strategy="replace", version=version)
    assert live_reference(harness, "drift", rng, 400) == "live_window"
    quiet = drift_evaluations(
        harness, "drift", rng, windows=3, rows_per_window=300, window_s=1.5, alpha=float(RARE)
    )
    assert quiet == [[], [], []]
    shifted = drift_evaluations(
        harness, "drift", rng, windows=1, rows_per_window=300, window_s=1.5, shift=6.0
    )
    assert "tenure_months" in shifted[0]
