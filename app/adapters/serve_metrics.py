"""Prometheus metrics of the predict path, on Ray's metrics endpoint (Serve adds the
deployment, replica and application tags)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.core.feedback import PredictionRef
from app.core.serving_stats import VariantStats

# Upper bounds in milliseconds.
LATENCY_BOUNDARIES_MS = [1.0, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]


class ObservedRecorder:
    """A serving recorder that also counts each request in Prometheus metrics:
    `mlservice_predictions_total{model, variant, outcome}` and
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
            description="Predict calls per model variant and outcome (ok, error).",
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
