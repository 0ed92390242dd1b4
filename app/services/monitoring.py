"""Monitoring as the API offers it: a model's live view (traffic, latency, quality, drift),
its policy, evaluation on demand, alerts and the drift report."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from app.core.monitoring import Alert, AlertState, MonitoringPolicy
from app.core.serving_stats import VariantStats
from app.core.webhook_targets import IpNetwork, refusal
from app.errors import DomainError, ErrorCode, InvalidInput, NotFound
from app.ports.monitoring import DriftReports, MonitorControl, PredictionWindows
from app.ports.serving import PredictionSink, ServingControl


class Monitoring:
    """Monitoring for the API.

    Args:
        monitor: the monitor (the monitor actor).
        traffic: deployments and their serving stats (the traffic actor).
        log: this replica's prediction log (flushed before an evaluation on demand).
        windows: the prediction log as monitoring reads it (request rates).
        reports: draws drift evaluations for people.
        webhook_allowed: networks webhooks may reach although link-local.
    """

    def __init__(
        self,
        monitor: MonitorControl,
        traffic: ServingControl | None,
        log: PredictionSink | None,
        windows: PredictionWindows | None,
        reports: DriftReports,
        webhook_allowed: Sequence[IpNetwork] = (),
    ) -> None:
        self._monitor = monitor
        self._webhook_allowed = tuple(webhook_allowed)
        self._traffic = traffic
        self._log = log
        self._windows = windows
        self._reports = reports

    def ping(self) -> None:
        """Raises when the monitor actor does not answer."""
        self._monitor.ping()

    async def policy(self, model: str) -> tuple[MonitoringPolicy, bool]:
        return await self._monitor.policy(model)

    async def set_policy(self, model: str, policy: MonitoringPolicy) -> MonitoringPolicy:
        """Set a model's policy; a webhook to a link-local or metadata address is refused."""
        if policy.webhook_url:
            host = urlsplit(policy.webhook_url).hostname or ""
            why = refusal(host, (), self._webhook_allowed)
            if why:
                raise InvalidInput.for_field(
                    "webhook_url",
                    f"{why}; alerts cannot be sent there (allow its network with "
                    "monitoring.webhook_allowed_networks)",
                )
        return await self._monitor.set_policy(model, policy)

    async def evaluate(self, model: str) -> dict[int, dict[str, Any]]:
        """Evaluate now, with what this replica has buffered written first."""
        if self._log is not None:
            await self._log.flush()
        return await self._monitor.evaluate(model)

    async def alerts(
        self, model: str | None, state: AlertState | None, offset: int, limit: int
    ) -> list[Alert]:
        return await self._monitor.alerts(model, state, offset, limit)

    async def drift(self, model: str) -> dict[int, dict[str, Any]]:
        return await self._monitor.drift(model)

    async def drift_of(self, model: str, version: int) -> dict[str, Any]:
        return await self._monitor.drift_of(model, version)

    async def report(self, model: str, version: int, kind: str) -> bytes | str:
        """The latest drift evaluation of a version drawn as a PNG (bytes) or an HTML page
        (`kind`: png or html). Raises NotFound when it was never evaluated."""
        evaluation = await self._monitor.drift_of(model, version)
        draw = self._reports.png if kind == "png" else self._reports.html
        return await asyncio.to_thread(draw, model, version, evaluation)

    async def variants(self, model: str, policy: MonitoringPolicy) -> list[dict[str, Any]]:
        """Per variant: counts, error rate, latency percentiles, quality (exact, from the
        traffic actor) and the request rate over the policy window (prediction log)."""
        stats: dict[str, VariantStats] = {}
        roles: dict[str, str] = {}
        if self._traffic is not None:
            try:
                view = await self._traffic.view(model)
            except DomainError as exc:
                if exc.code is not ErrorCode.NOT_DEPLOYED:
                    raise
            else:
                stats = view.stats
                roles = {v.name: v.role.value for v in view.table.variants}
                shadow = view.table.shadow()
                if shadow is not None:
                    roles[shadow.name] = "shadow"
        rates = await asyncio.to_thread(self._rates, model, policy)
        out = []
        for name, value in sorted(stats.items()):
            out.append(
                {
                    "variant": name,
                    "version": version_of(name),
                    "role": roles.get(name),
                    "requests": value.requests,
                    "errors": value.errors,
                    "error_rate": value.error_rate,
                    "request_rate_per_s": rates.get(name),
                    "latency_ms": {q: value.percentile_ms(p) for q, p in _PERCENTILES.items()},
                    "quality": {"outcomes": value.outcomes.n, "mean": value.outcomes.mean},
                }
            )
        return out

    def _rates(self, model: str, policy: MonitoringPolicy) -> dict[str, float]:
        if self._windows is None or policy.sample_rate <= 0:
            return {}
        now = time.time()
        rates: dict[str, float] = {}
        for version in self._windows.versions(model):
            frame = self._windows.window(model, version, now - policy.window_s, now)
            if frame.empty:
                continue
            for variant, requests in frame.groupby("variant")["request_id"].nunique().items():
                rate = requests / policy.sample_rate / policy.window_s
                rates[str(variant)] = rates.get(str(variant), 0.0) + rate
        return rates


_PERCENTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


def version_of(variant: str) -> int:
    """The version a variant serves (`v3`, `v3-triton`)."""
    try:
        return int(variant.removeprefix("v").split("-", 1)[0])
    except ValueError:
        raise NotFound(ErrorCode.NOT_DEPLOYED, f"Unknown variant {variant!r}.") from None
