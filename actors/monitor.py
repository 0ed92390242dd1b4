"""The monitor actor: evaluates drift over the prediction log, keeps alerts, sends them to
webhooks and starts retraining jobs.

A plain class; the builder makes it a named, detached Ray actor like the registry. Every
`evaluate_every_s` it compares, for each model with logged traffic, each version's last
window with the version's training reference (`app.core.drift`), and applies
`app.core.monitoring.assess`. The API can evaluate a model at once (`evaluate`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from app.core.drift import FeatureDrift, Reference, Thresholds, capture, compare
from app.core.monitoring import (
    Alert,
    AlertState,
    Delivery,
    MonitoringPolicy,
    Window,
    assess,
)
from app.errors import ErrorCode, NotFound
from app.jobs.spec import TrainingSpec
from app.ports.monitoring import (
    AlertDelivery,
    DriftGauges,
    DriftReferences,
    MonitorStore,
    PredictionWindows,
)
from app.ports.training import JobSubmitter
from app.settings import MonitoringSettings, redact

log = logging.getLogger(__name__)

MONITOR_ACTOR = "monitor"  # the actor recorded on the jobs it submits
_GAUGE_REFRESH_S = 5.0
_LOG_COLUMNS = frozenset({"ts", "request_id", "variant", "prediction"})  # not features


class Monitor:
    """Drift evaluation, alerts, webhooks and retraining for every monitored model.

    Args:
        config: the monitoring settings (the default policy, periods, retention).
        store: the durable monitoring state (the service database).
        references: each version's drift reference (MLflow).
        predictions: the prediction log, as monitoring reads it (the file storage).
        jobs: submits retraining jobs.
        delivery: sends alerts to webhooks.
        gauges: drift scores as metrics (None: not exported).
        clock: epoch seconds.
    """

    def __init__(
        self,
        config: MonitoringSettings,
        *,
        store: MonitorStore,
        references: DriftReferences,
        predictions: PredictionWindows,
        jobs: JobSubmitter,
        delivery: AlertDelivery,
        gauges: DriftGauges | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._store = store
        self._references = references
        self._log = predictions
        self._jobs = jobs
        self._delivery = delivery
        self._gauges = gauges
        self._clock = clock
        self._policies = self._store.policies()
        self._locks: dict[str, asyncio.Lock] = {}
        self._task: asyncio.Task[None] | None = None
        self._gauge_task: asyncio.Task[None] | None = None
        log.info("monitor loaded: %d policy(ies)", len(self._policies))

    def ping(self) -> bool:
        """Liveness, for the health probe."""
        self._start()
        return True

    # -- policies ---------------------------------------------------------------------

    def policy(self, model: str) -> MonitoringPolicy:
        """A model's policy (the settings' defaults when it has none)."""
        return self._policies.get(model) or default_policy(self._config)

    def has_policy(self, model: str) -> bool:
        return model in self._policies

    def set_policy(self, model: str, policy: MonitoringPolicy) -> MonitoringPolicy:
        """Store a model's policy."""
        self._store.save_policy(model, policy)
        self._policies[model] = policy
        log.info("monitoring policy of %s set (window %.0f s)", model, policy.window_s)
        return policy

    def sample_rates(self) -> tuple[float, dict[str, float]]:
        """The default sample rate and each model's own, for the ingress replicas (their
        polls also restart the background work after this actor restarted)."""
        self._start()
        return self._config.sample_rate, {m: p.sample_rate for m, p in self._policies.items()}

    # -- evaluation -------------------------------------------------------------------

    async def evaluate(self, model: str) -> dict[int, dict[str, Any]]:
        """Compare each logged version's last window with its reference, now; update the
        alerts. Returns the evaluation per version (as `drift` does)."""
        self._start()
        lock = self._locks.setdefault(model, asyncio.Lock())
        async with lock:
            policy = self.policy(model)
            now = self._clock()
            since = now - policy.window_s
            out = {}
            for version in await asyncio.to_thread(self._log.versions, model):
                evaluation = await self._evaluate_version(model, version, policy, since, now)
                if evaluation is not None:
                    out[version] = evaluation
            return out

    async def _evaluate_version(
        self, model: str, version: int, policy: MonitoringPolicy, since: float, now: float
    ) -> dict[str, Any] | None:
        reference = await self._reference(model, version)
        if reference is not None and reference.window is not None:
            since = max(since, reference.window[1])  # after the traffic it was taken from
        frame = await asyncio.to_thread(self._log.window, model, version, since, now)
        if frame.empty:
            return None
        window = Window(since, now, len(frame))
        if reference is None:
            body = {"window": _window_dict(window), "reference": False, "features": []}
            self._store.save_drift(model, version, now, body)
            return body
        columns = {name: frame[name].to_numpy() for name in reference.features if name in frame}
        results = await asyncio.to_thread(compare, reference, columns, policy.thresholds)
        body = drift_body(results, window, reference)
        self._store.save_drift(model, version, now, body)
        if self._gauges is not None:
            try:
                self._gauges.export(model, version, results)
            except Exception:  # metrics must never fail an evaluation
                log.warning("drift gauges not published", exc_info=True)
        await self._alert(model, version, results, window, policy, now)
        return body

    async def _reference(self, model: str, version: int) -> Reference | None:
        """The version's reference; without one from training or its run's dataset, its
        first `reference_rows` rows of live traffic, once logged (kept, marked
        `live_window`)."""
        found = await asyncio.to_thread(self._references.get, model, version)
        if found is not None:
            return found
        rows = self._config.reference_rows
        first = await asyncio.to_thread(self._log.first, model, version, rows)
        if len(first) < rows:
            return None
        columns = {c: first[c].to_numpy() for c in first.columns if c not in _LOG_COLUMNS}
        captured = await asyncio.to_thread(capture, columns)
        span = (float(first["ts"].min()), float(first["ts"].max()))
        reference = Reference(captured.features, captured.rows, "live_window", span)
        await asyncio.to_thread(self._references.keep, model, version, reference)
        log.info("%s v%d: its first %d live rows are its drift reference", model, version, rows)
        return reference

    async def _alert(
        self,
        model: str,
        version: int,
        results: list[FeatureDrift],
        window: Window,
        policy: MonitoringPolicy,
        now: float,
    ) -> None:
        retrains = [at for _, _, at in self._store.retrains(model)]
        decision = assess(
            model,
            version,
            self._store.latest_alert(model, version),
            results,
            window,
            policy,
            now,
            f"alert-{uuid.uuid4().hex[:12]}",
            retrains,
        )
        alert = decision.alert
        if alert is None:
            return
        self._store.save_alert(alert)  # first: a pending delivery is retried (`_redeliver`)
        if decision.deliver:
            alert = await self._deliver(alert, policy)
            self._store.save_alert(alert)
        if decision.retrain:
            alert = await self._retrain(alert, policy)
            self._store.save_alert(alert)
        if alert.state is AlertState.RESOLVED:
            log.info("alert %s of %s v%d resolved", alert.id, model, version)
        elif alert.occurrences == 1:
            log.warning(
                "drift alert %s: %s v%d, features %s", alert.id, model, version, alert.features
            )

    async def _retrain(self, alert: Alert, policy: MonitoringPolicy) -> Alert:
        assert policy.retrain is not None
        trigger = {
            "alert_id": alert.id,
            "reason": f"drift in {', '.join(alert.features)} of {alert.model} v{alert.version}",
        }
        try:
            spec = TrainingSpec.model_validate({**policy.retrain.spec, "trigger": trigger})
            job = await self._jobs.submit(spec, MONITOR_ACTOR)
            job_id = job.record.job_id
            self._store.add_retrain(alert.model, job_id, alert.id, self._clock())
        except Exception as exc:
            log.exception("retraining for alert %s not submitted", alert.id)
            return replace(
                alert, retraining_job=redact(f"failed: {type(exc).__name__}: {exc}")[:500]
            )
        log.warning("alert %s started retraining job %s", alert.id, job_id)
        return replace(alert, retraining_job=job_id)

    async def _deliver(self, alert: Alert, policy: MonitoringPolicy) -> Alert:
        assert policy.webhook_url
        return await self._delivery.deliver(alert, policy.webhook_url)

    # -- reads ------------------------------------------------------------------------

    def alerts(
        self, model: str | None, state: AlertState | None, offset: int, limit: int
    ) -> list[Alert]:
        """Alerts, newest first."""
        return self._store.alerts(model, state, offset, limit)

    def drift(self, model: str) -> dict[int, dict[str, Any]]:
        """The latest evaluation of each version of a model."""
        return self._store.drift(model)

    def drift_of(self, model: str, version: int) -> dict[str, Any]:
        """One version's latest evaluation.

        Raises:
            NotFound: never evaluated (`drift_not_evaluated`).
        """
        found = self._store.drift(model).get(version)
        if found is None:
            raise NotFound(
                ErrorCode.DRIFT_NOT_EVALUATED,
                f"{model} version {version} has no drift evaluation yet.",
                model=model,
                version=version,
            )
        return found

    # -- background -------------------------------------------------------------------

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
            self._gauge_task = asyncio.ensure_future(self._refresh_gauges())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._config.evaluate_every_s)
            models: list[str] = []
            try:
                models = await asyncio.to_thread(self._log.models)
            except Exception:
                log.exception("prediction log not listed; retrying next period")
            for model in models:
                try:  # one model's trouble never stops the others
                    await self.evaluate(model)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("evaluation of %s failed; retrying next period", model)
            try:
                await self._redeliver()
                cutoff = self._clock() - self._config.log_retention_s
                removed = await asyncio.to_thread(self._log.prune, cutoff)
                if removed:
                    log.info("prediction log: removed %d file(s) past retention", removed)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("monitoring upkeep failed; retrying next period")

    async def _redeliver(self) -> None:
        """Send the open alerts whose delivery is still pending (the actor stopped, or
        the store failed, between saving and sending)."""
        for alert in self._store.alerts(None, AlertState.OPEN, 0, 1000):
            policy = self.policy(alert.model)
            if alert.delivery is Delivery.PENDING and policy.webhook_url:
                self._store.save_alert(await self._deliver(alert, policy))

    async def _refresh_gauges(self) -> None:
        while True:
            await asyncio.sleep(_GAUGE_REFRESH_S)
            if self._gauges is not None:
                try:
                    self._gauges.refresh()
                except Exception:
                    log.warning("drift gauges not published", exc_info=True)


def default_policy(config: MonitoringSettings) -> MonitoringPolicy:
    """The policy of a model without one of its own."""
    return MonitoringPolicy(
        window_s=config.window_s,
        thresholds=Thresholds(
            psi=config.psi,
            ks_statistic=config.ks_statistic,
            alpha=config.alpha,
            min_samples=config.min_samples,
        ),
        cooldown_s=config.cooldown_s,
        sample_rate=config.sample_rate,
        webhook_url=str(config.webhook_url) if config.webhook_url else None,
    )


def drift_body(
    results: list[FeatureDrift], window: Window, reference: Reference | None = None
) -> dict[str, Any]:
    """An evaluation as stored and served."""
    return {
        "window": _window_dict(window),
        "reference": True,
        "reference_source": reference.source if reference else "training",
        "drifted": [r.feature for r in results if r.drifted],
        "features": [asdict(r) for r in results],
    }


def _window_dict(window: Window) -> dict[str, Any]:
    return {"start": window.start, "end": window.end, "rows": window.rows}
