"""Drift statistics on seeded data: no false alarms on the training distribution, the
shifted feature and only it flagged, no alarms on tiny windows or on trivial shifts in
huge ones, and agreement with scipy's exact statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from app.core.drift import (
    FeatureKind,
    NumericProfile,
    Reference,
    Thresholds,
    capture,
    compare,
)


def training(rng: np.random.Generator, rows: int = 20_000) -> dict[str, np.ndarray]:
    return {
        "tenure": rng.gamma(2.0, 12.0, rows),
        "charges": rng.normal(70, 20, rows),
        "calls": rng.poisson(1.5, rows).astype(float),
        "plan": rng.choice(["basic", "plus", "pro"], rows, p=[0.6, 0.3, 0.1]),
    }


def test_windows_from_the_training_distribution_raise_no_alarm() -> None:
    reference = capture(training(np.random.default_rng(0)))
    alarms = 0
    for seed in range(1, 41):  # 40 windows of 1,000 rows
        window = training(np.random.default_rng(seed), 1_000)
        alarms += sum(result.drifted for result in compare(reference, window))
    assert alarms == 0


def test_a_shifted_feature_and_only_it_is_flagged() -> None:
    reference = capture(training(np.random.default_rng(0)))
    window = training(np.random.default_rng(7), 1_000)
    window["charges"] = window["charges"] + 15  # three quarters of a standard deviation
    results = {r.feature: r for r in compare(reference, window)}
    assert [name for name, r in results.items() if r.drifted] == ["charges"]
    shifted = results["charges"]
    assert shifted.psi is not None and shifted.psi > 0.2
    assert shifted.wasserstein == pytest.approx(0.75, abs=0.1)
    assert "PSI" in shifted.reason


def test_a_changed_category_mix_is_flagged() -> None:
    reference = capture(training(np.random.default_rng(0)))
    window = training(np.random.default_rng(3), 2_000)
    window["plan"] = np.random.default_rng(4).choice(
        ["basic", "plus", "pro"], 2_000, p=[0.2, 0.3, 0.5]
    )
    results = {r.feature: r for r in compare(reference, window)}
    assert results["plan"].drifted and results["plan"].kind is FeatureKind.CATEGORICAL
    assert not results["tenure"].drifted


def test_unseen_categories_count_in_their_own_bin() -> None:
    reference = capture({"plan": np.array(["a", "b"] * 500)})
    (result,) = compare(reference, {"plan": np.array(["zzz"] * 500)})
    assert result.drifted and result.bin_labels[-1] == "__other__"
    assert result.current_hist[-1] == 1.0


def test_a_tiny_window_never_fires() -> None:
    reference = capture(training(np.random.default_rng(0)))
    window = {
        name: values[:50] + 100 if values.dtype.kind == "f" else values[:50]
        for name, values in training(np.random.default_rng(1), 50).items()
    }
    results = compare(reference, window)
    assert not any(r.drifted for r in results)
    assert "below the minimum of 200" in results[0].reason


def test_a_trivial_shift_in_a_huge_window_is_significant_but_not_drift() -> None:
    rng = np.random.default_rng(0)
    reference = capture({"x": rng.normal(0, 1, 200_000)})
    (result,) = compare(reference, {"x": rng.normal(0.02, 1, 1_000_000)})
    assert result.p_value is not None and result.p_value < 1e-6  # "significant"
    assert not result.drifted  # but a fiftieth of a standard deviation is not drift
    assert result.reason == "effect below thresholds"


def test_statistics_agree_with_scipy_on_the_raw_samples() -> None:
    rng = np.random.default_rng(5)
    train, live = rng.normal(0, 1, 50_000), rng.normal(0.3, 1.2, 20_000)
    (result,) = compare(capture({"x": train}), {"x": live})
    exact = stats.ks_2samp(train, live)
    assert result.ks_statistic == pytest.approx(exact.statistic, abs=0.005)
    assert result.wasserstein == pytest.approx(
        stats.wasserstein_distance(train, live) / train.std(), rel=0.02
    )


def test_missing_values_are_counted_not_compared() -> None:
    rng = np.random.default_rng(0)
    reference = capture({"x": rng.normal(size=5_000)})
    window = rng.normal(size=1_000)
    window[:100] = np.nan
    (result,) = compare(reference, {"x": window})
    assert result.samples == 900 and result.missing_rate == pytest.approx(0.1)
    assert not result.drifted


def test_the_reference_survives_json() -> None:
    reference = capture(training(np.random.default_rng(0), 1_000))
    again = Reference.from_dict(json.loads(json.dumps(reference.to_dict())))
    assert again == reference
    assert isinstance(again.features["tenure"], NumericProfile)


def test_thresholds_are_the_policy() -> None:
    rng = np.random.default_rng(0)
    reference = capture({"x": rng.normal(size=20_000)})
    window = {"x": rng.normal(0.15, 1, 5_000)}
    assert not compare(reference, window)[0].drifted
    assert compare(reference, window, Thresholds(ks_statistic=0.05))[0].drifted


def test_values_that_are_not_numbers_are_reported_not_raised() -> None:
    reference = capture({"x": np.arange(1000.0)})
    (result,) = compare(reference, {"x": np.array([{"a": 1}] * 300, dtype=object)})
    assert not result.drifted and "not numbers" in result.reason
