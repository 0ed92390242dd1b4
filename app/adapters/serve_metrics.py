"""Prometheus metrics on Ray's metrics endpoint: the predict path's counts and latency
(Serve adds the deployment, replica and application tags), quality from feedback, and
drift scores."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.core.drift import PREDICTION, FeatureDrift
from app.core.feedback import PredictionRef
from app.core.serving_stats import VariantStats

# Upper bounds in milliseconds.
LATENCY_BOUNDARIES_MS = [1.0, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]


class ObservedRecorder:
    """A serving recorder that also counts each request in Prometheus metrics:
    `mlservice_predictions_total{model, variant, outcome}` (ok, error, or rejected: the
    client's mistake) and
    `mlservice_predict_latency_ms{model, variant}` (a histogram).

    Args:
        recorder: the recorder it forwards to (the traffic actor's buffer).
    """

    def __init__(self, recorder: Any) -> None:
        from ray.serve import metrics as serve_metrics

        metrics: Any = serve_metrics  # its tag_keys annotations say one key (tuple[str])
        self._recorder = recorder
        self._requests = metrics.Counter(
            "mlservice_predictions",
            description="Predict calls per model variant and outcome (ok, error, rejected).",
            tag_keys=("model", "variant", "outcome"),
        )
        self._latency = metrics.Histogram(
            "mlservice_predict_latency_ms",
            description="Model call latency per variant, in milliseconds.",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("model", "variant"),
        )

    def started(self, model: str, variant: str) -> None:
        self._recorder.started(model, variant)

    def finished(self, model: str, variant: str, latency_ms: float, ok: bool) -> None:
        self._recorder.finished(model, variant, latency_ms, ok)
        outcome = "ok" if ok else "error"
        self._requests.inc(1, {"model": model, "variant": variant, "outcome": outcome})
        self._latency.observe(latency_ms, {"model": model, "variant": variant})

    def rejected(self, model: str, variant: str) -> None:
        self._recorder.rejected(model, variant)
        self._requests.inc(1, {"model": model, "variant": variant, "outcome": "rejected"})

    def predicted(self, ref: PredictionRef) -> None:
        self._recorder.predicted(ref)

    def compared(self, model: str, variant: str, rows: int, agreed: int) -> None:
        self._recorder.compared(model, variant, rows, agreed)


class QualityGauges:
    """Quality from feedback per variant as Prometheus gauges, from the traffic actor:
    `mlservice_feedback_outcomes{model, variant}` (joined outcomes) and
    `mlservice_feedback_quality{model, variant}` (their mean: accuracy for labels)."""

    def __init__(self) -> None:
        from ray.util import metrics as ray_metrics

        metrics: Any = ray_metrics  # its tag_keys annotations say one key (tuple[str])
        keys = ("model", "variant")
        self._count = metrics.Gauge(
            "mlservice_feedback_outcomes", "Joined feedback outcomes per variant", keys
        )
        self._mean = metrics.Gauge(
            "mlservice_feedback_quality", "Mean feedback outcome per variant", keys
        )

    def publish(self, stats: Mapping[str, Mapping[str, VariantStats]]) -> None:
        """Set every variant's gauges (call it every few seconds: Ray drops gauge values
        that are not set again)."""
        for model, variants in stats.items():
            for variant, value in variants.items():
                tags = {"model": model, "variant": variant}
                self._count.set(float(value.outcomes.n), tags)
                if value.outcomes.mean is not None:
                    self._mean.set(value.outcomes.mean, tags)


class DriftGauges:
    """Drift scores as Prometheus gauges on Ray's metrics endpoint, from the monitor:
    `mlservice_drift_psi`, `mlservice_drift_ks_statistic`, `mlservice_drift_detected`
    (per model, version and feature) and `mlservice_prediction_share` (the last window's
    predictions per bin of the reference's deciles)."""

    def __init__(self) -> None:
        from ray.util.metrics import Gauge

        keys = ("model", "version", "feature")
        self._psi = Gauge("mlservice_drift_psi", "PSI per feature (last window)", keys)
        self._ks = Gauge("mlservice_drift_ks_statistic", "KS statistic per numeric feature", keys)
        self._drifted = Gauge(
            "mlservice_drift_detected", "1 if the feature drifted in the last window", keys
        )
        self._share = Gauge(
            "mlservice_prediction_share",
            "Share of the last window's predictions per bin (the reference's deciles)",
            ("model", "version", "bin"),
        )
        self._latest: dict[tuple[str, str, str], tuple[float | None, float | None, bool]] = {}
        self._shares: dict[tuple[str, str], dict[str, float]] = {}

    def export(self, model: str, version: int, results: list[FeatureDrift]) -> None:
        """See `DriftGauges.export`."""
        for result in results:
            key = (model, str(version), result.feature)
            self._latest[key] = (result.psi, result.ks_statistic, result.drifted)
            if result.feature == PREDICTION:  # the prediction distribution, per bin
                shares = dict(zip(result.bin_labels, result.current_hist, strict=False))
                self._shares[(model, str(version))] = shares
        self.refresh()

    def refresh(self) -> None:
        """See `DriftGauges.refresh` (Ray drops a gauge value that is not set again within
        a few export periods: the monitor calls this every few seconds)."""
        for (model, version, feature), (psi, ks, drifted) in self._latest.items():
            tags = {"model": model, "version": version, "feature": feature}
            if psi is not None:
                self._psi.set(psi, tags)
            if ks is not None:
                self._ks.set(ks, tags)
            self._drifted.set(1.0 if drifted else 0.0, tags)
        for (model, version), shares in self._shares.items():
            for label, share in shares.items():
                ascii_label = label.encode("ascii", "replace").decode()  # Ray's tags: ASCII
                tags = {"model": model, "version": version, "bin": ascii_label}
                self._share.set(share, tags)
