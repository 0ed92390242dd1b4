"""The monitor actor: evaluates drift over the prediction log, keeps alerts, sends them to
webhooks and starts retraining jobs.

A plain class; the builder makes it a named, detached Ray actor like the registry. Every
`evaluate_every_s` it compares, for each model with logged traffic, each version's last
window with the version's training reference (`app.core.drift`), and applies
`app.core.monitoring.assess`. The API can evaluate a model at once (`evaluate`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from app.adapters.prediction_log import prune_log, read_window
from app.core.drift import PREDICTION, FeatureDrift, Reference, Thresholds, compare
from app.core.monitoring import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Alert,
    AlertState,
    Delivery,
    MonitoringPolicy,
    Window,
    assess,
    sign,
)
from app.errors import ErrorCode, NotFound
from app.logs import configure_logging
from app.ports import MonitorStore
from app.settings import MonitoringSettings, Settings, settings_fingerprint

log = logging.getLogger(__name__)

MONITOR_ACTOR = "monitor"  # the actor recorded on the jobs it submits
_GAUGE_REFRESH_S = 5.0


class Monitor:
    """Drift evaluation, alerts, webhooks and retraining for every monitored model.

    Args:
        settings: resolved settings.
        store: the state store (built from settings when omitted).
        references: `get(model, version) -> Reference | None` (MLflow by default).
        jobs: `TrainingJobs` for retraining (built on first use by default).
        clock: epoch seconds.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: MonitorStore | None = None,
        references: Any = None,
        jobs: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        configure_logging(settings.log_level)
        self._settings = settings
        self._config = settings.monitoring
        self._fingerprint = settings_fingerprint(settings)
        self._store = store or _default_store(settings)
        self._references = references or _default_references(settings)
        self._jobs = jobs
        self._clock = clock
        self._policies = self._store.policies()
        self._locks: dict[str, asyncio.Lock] = {}
        self._task: asyncio.Task[None] | None = None
        self._gauge_task: asyncio.Task[None] | None = None
        self._gauges: Any = None
        self._latest: dict[tuple[str, str, str], tuple[float | None, float | None, bool]] = {}
        self._shares: dict[tuple[str, str], dict[str, float]] = {}
        log.info("monitor loaded: %d policy(ies)", len(self._policies))

    def settings_fingerprint(self) -> str:
        """The settings this actor runs with (the builder replaces a stale one)."""
        self._start()
        return self._fingerprint

    def ping(self) -> bool:
        """Liveness, for the health probe."""
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
            for version in await asyncio.to_thread(_logged_versions, self._config, model):
                evaluation = await self._evaluate_version(model, version, policy, since, now)
                if evaluation is not None:
                    out[version] = evaluation
            return out

    async def _evaluate_version(
        self, model: str, version: int, policy: MonitoringPolicy, since: float, now: float
    ) -> dict[str, Any] | None:

        assert self._config.log_dir is not None  # resolved
        frame = await asyncio.to_thread(
            read_window, self._config.log_dir, model, version, since, now
        )
        if frame.empty:
            return None
        window = Window(since, now, len(frame))
        reference: Reference | None = await asyncio.to_thread(self._references.get, model, version)
        if reference is None:
            body = {"window": _window_dict(window), "reference": False, "features": []}
            self._store.save_drift(model, version, now, body)
            return body
        columns = {name: frame[name].to_numpy() for name in reference.features if name in frame}
        results = await asyncio.to_thread(compare, reference, columns, policy.thresholds)
        body = drift_body(results, window)
        self._store.save_drift(model, version, now, body)
        self._export(model, version, results)
        await self._alert(model, version, results, window, policy, now)
        return body

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
        from app.api.schemas.training import TrainingSpec

        assert policy.retrain is not None
        trigger = {
            "alert_id": alert.id,
            "reason": f"drift in {', '.join(alert.features)} of {alert.model} v{alert.version}",
        }
        try:
            spec = TrainingSpec.model_validate({**policy.retrain.spec, "trigger": trigger})
            job = await self._training_jobs().submit(spec, MONITOR_ACTOR)
            job_id = job.record.job_id
            self._store.add_retrain(alert.model, job_id, alert.id, self._clock())
        except Exception as exc:
            log.exception("retraining for alert %s not submitted", alert.id)
            return replace(alert, retraining_job=f"failed: {type(exc).__name__}: {exc}"[:500])
        log.warning("alert %s started retraining job %s", alert.id, job_id)
        return replace(alert, retraining_job=job_id)

    async def _deliver(self, alert: Alert, policy: MonitoringPolicy) -> Alert:
        import httpx

        assert policy.webhook_url
        body = json.dumps({"event": "alert.opened", "alert": alert.to_dict()}).encode()
        timestamp = str(int(self._clock()))
        headers = {"content-type": "application/json", TIMESTAMP_HEADER: timestamp}
        secret = self._config.webhook_secret
        if secret is not None:
            headers[SIGNATURE_HEADER] = sign(secret.get_secret_value(), timestamp, body)
        detail = ""
        async with httpx.AsyncClient(timeout=self._config.webhook_timeout_s) as http:
            for attempt in range(1, self._config.webhook_attempts + 1):
                try:
                    response = await http.post(policy.webhook_url, content=body, headers=headers)
                    if response.status_code < 300:
                        return replace(
                            alert,
                            delivery=Delivery.DELIVERED,
                            delivery_detail=f"HTTP {response.status_code}",
                        )
                    detail = f"HTTP {response.status_code}"
                except (httpx.HTTPError, httpx.InvalidURL) as exc:
                    detail = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "webhook for alert %s: attempt %d failed (%s)", alert.id, attempt, detail
                )
                if attempt < self._config.webhook_attempts:
                    await asyncio.sleep(min(2.0**attempt * 0.25, 5.0))
        return replace(alert, delivery=Delivery.FAILED, delivery_detail=detail[:500])

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
                models = await asyncio.to_thread(_logged_models, self._config)
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
                assert self._config.log_dir is not None  # resolved
                cutoff = self._clock() - self._config.log_retention_s
                removed = await asyncio.to_thread(prune_log, self._config.log_dir, cutoff)
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
            if self._latest or self._shares:
                try:
                    self._publish()
                except Exception:
                    log.warning("drift gauges not published", exc_info=True)

    def _training_jobs(self) -> Any:
        if self._jobs is None:
            from app.adapters.named_actor import NamedActor
            from app.adapters.registry_actor_client import ActorModelRegistry
            from app.bootstrap import training_jobs

            registry = NamedActor(
                self._settings.registry.actor_name, self._settings.registry.namespace
            )
            self._jobs = training_jobs(self._settings, ActorModelRegistry(registry.handle()))
        return self._jobs

    def _export(self, model: str, version: int, results: list[FeatureDrift]) -> None:
        """Keep the latest drift scores for the Prometheus gauges (see `_publish`)."""
        for result in results:
            key = (model, str(version), result.feature)
            self._latest[key] = (result.psi, result.ks_statistic, result.drifted)
            if result.feature == PREDICTION:  # the prediction distribution, per bin
                shares = dict(zip(result.bin_labels, result.current_hist, strict=False))
                self._shares[(model, str(version))] = shares
        try:
            self._publish()
        except Exception:  # metrics must never fail an evaluation
            log.warning("drift gauges not published", exc_info=True)

    def _publish(self) -> None:
        """Set the drift gauges (Ray's metrics endpoint) to the latest scores. Ray drops a
        gauge value that is not set again within a few export periods: `_run` calls this
        every `_GAUGE_REFRESH_S`."""
        if self._gauges is None:
            from ray.util.metrics import Gauge

            keys = ("model", "version", "feature")
            self._gauges = {
                "psi": Gauge("mlservice_drift_psi", "PSI per feature (last window)", keys),
                "ks": Gauge(
                    "mlservice_drift_ks_statistic", "KS statistic per numeric feature", keys
                ),
                "drifted": Gauge(
                    "mlservice_drift_detected", "1 if the feature drifted in the last window", keys
                ),
                "share": Gauge(
                    "mlservice_prediction_share",
                    "Share of the last window's predictions per bin (the reference's deciles)",
                    ("model", "version", "bin"),
                ),
            }
        for (model, version, feature), (psi, ks, drifted) in self._latest.items():
            tags = {"model": model, "version": version, "feature": feature}
            if psi is not None:
                self._gauges["psi"].set(psi, tags)
            if ks is not None:
                self._gauges["ks"].set(ks, tags)
            self._gauges["drifted"].set(1.0 if drifted else 0.0, tags)
        for (model, version), shares in self._shares.items():
            for label, share in shares.items():
                ascii_label = label.encode("ascii", "replace").decode()  # Ray's tags: ASCII
                tags = {"model": model, "version": version, "bin": ascii_label}
                self._gauges["share"].set(share, tags)


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


def drift_body(results: list[FeatureDrift], window: Window) -> dict[str, Any]:
    """An evaluation as stored and served."""
    from dataclasses import asdict

    return {
        "window": _window_dict(window),
        "reference": True,
        "drifted": [r.feature for r in results if r.drifted],
        "features": [asdict(r) for r in results],
    }


def _window_dict(window: Window) -> dict[str, Any]:
    return {"start": window.start, "end": window.end, "rows": window.rows}


def _logged_models(config: MonitoringSettings) -> list[str]:
    assert config.log_dir is not None
    if not config.log_dir.is_dir():
        return []
    return sorted(p.name.removeprefix("model=") for p in config.log_dir.glob("model=*"))


def _logged_versions(config: MonitoringSettings, model: str) -> list[int]:
    assert config.log_dir is not None
    directory = config.log_dir / f"model={model}"
    if not directory.is_dir():
        return []
    names = (p.name.removeprefix("version=") for p in directory.glob("version=*"))
    return sorted(int(name) for name in names if name.isdigit())


def _default_store(settings: Settings) -> MonitorStore:
    from app.adapters.monitor_store import SqlMonitorStore

    assert settings.state.database_url  # resolved
    return SqlMonitorStore(settings.state.database_url)


def _default_references(settings: Settings) -> Any:
    from app.adapters.mlflow_references import MlflowReferences

    assert settings.mlflow.tracking_uri  # resolved
    return MlflowReferences(settings.mlflow.tracking_uri)
