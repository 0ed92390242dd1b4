"""Monitoring: durable state, the monitor as the API uses it, the prediction log and
drift reports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from app.core.drift import FeatureDrift, Reference
from app.core.monitoring import Alert, AlertState, MonitoringPolicy

if TYPE_CHECKING:
    import pandas as pd


class MonitorStore(Protocol):
    """Durable monitoring state: policies, alerts, the latest drift per version, retrains."""

    def policies(self) -> dict[str, MonitoringPolicy]:
        """Every model's stored policy."""
        ...

    def save_policy(self, model: str, policy: MonitoringPolicy) -> None:
        """Store a model's policy."""
        ...

    def save_alert(self, alert: Alert) -> None:
        """Insert or update an alert."""
        ...

    def latest_alert(self, model: str, version: int) -> Alert | None:
        """A version's most recent alert (open or resolved)."""
        ...

    def alerts(
        self, model: str | None, state: AlertState | None, offset: int, limit: int
    ) -> list[Alert]:
        """Alerts, newest first."""
        ...

    def save_drift(
        self, model: str, version: int, evaluated_at: float, body: dict[str, Any]
    ) -> None:
        """Store a version's latest drift evaluation."""
        ...

    def drift(self, model: str) -> dict[int, dict[str, Any]]:
        """The latest drift evaluation of each version of a model."""
        ...

    def add_retrain(self, model: str, job_id: str, alert_id: str, at: float) -> None:
        """Record a retraining job started by an alert."""
        ...

    def retrains(self, model: str) -> list[tuple[str, str, float]]:
        """(job id, alert id, submitted at) of a model's retraining jobs."""
        ...


class MonitorControl(Protocol):
    """The monitor as the API uses it (the monitor actor, over Ray)."""

    async def policy(self, model: str) -> tuple[MonitoringPolicy, bool]:
        """A model's policy, and whether it is its own (else the service's defaults)."""
        ...

    async def set_policy(self, model: str, policy: MonitoringPolicy) -> MonitoringPolicy:
        """Store a model's policy."""
        ...

    async def evaluate(self, model: str) -> dict[int, dict[str, Any]]:
        """Evaluate drift now; the evaluation per version (alerts follow as they would)."""
        ...

    async def alerts(
        self, model: str | None, state: AlertState | None, offset: int, limit: int
    ) -> list[Alert]:
        """Alerts, newest first."""
        ...

    async def drift(self, model: str) -> dict[int, dict[str, Any]]:
        """The latest evaluation of each version of a model."""
        ...

    async def drift_of(self, model: str, version: int) -> dict[str, Any]:
        """One version's latest evaluation. Raises NotFound (`drift_not_evaluated`)."""
        ...

    def ping(self) -> None:
        """Raises when the monitor does not answer (for the health probe)."""
        ...


class PredictionWindows(Protocol):
    """The prediction log as monitoring reads it."""

    def models(self) -> list[str]:
        """Models with logged predictions."""
        ...

    def versions(self, model: str) -> list[int]:
        """A model's versions with logged predictions."""
        ...

    def first(self, model: str, version: int, rows: int) -> pd.DataFrame:
        """The version's first `rows` logged rows (fewer when it has fewer), oldest first."""
        ...

    def window(
        self, model: str, version: int, since: float, until: float | None = None
    ) -> pd.DataFrame:
        """The logged rows of a version with `since <= ts < until`: columns `ts`,
        `request_id`, `variant`, the input features, `__prediction__` and `prediction`."""
        ...

    def prune(self, before: float) -> int:
        """Delete what was logged before `before` (epoch seconds); how many files."""
        ...


class DriftReports(Protocol):
    """A drift evaluation drawn for people."""

    def png(self, model: str, version: int, evaluation: dict[str, Any]) -> bytes:
        """Reference vs current histograms per feature, as a PNG picture."""
        ...

    def html(self, model: str, version: int, evaluation: dict[str, Any]) -> str:
        """The same as a page."""
        ...


class AlertDelivery(Protocol):
    """Where alerts are sent (webhooks)."""

    async def deliver(self, alert: Alert, url: str) -> Alert:
        """Send the opened alert; the alert with its delivery state (never raises)."""
        ...


class DriftGauges(Protocol):
    """Drift scores as metrics (Prometheus, through Ray's metrics)."""

    def export(self, model: str, version: int, results: list[FeatureDrift]) -> None:
        """Keep the latest scores of a version's features and publish them."""
        ...

    def refresh(self) -> None:
        """Publish the kept scores again (metrics are dropped when not set for a while)."""
        ...


class DriftReferences(Protocol):
    """What a version's live traffic is compared with."""

    def get(self, model: str, version: int) -> Reference | None:
        """The version's reference: captured at training, else from its run's logged
        dataset, else its first live window once kept; None when it has none yet."""
        ...

    def keep(self, model: str, version: int, reference: Reference) -> None:
        """Store a reference taken from the version's first live traffic."""
        ...
