"""The API ingress deployment: a plain class, made a Serve deployment by the builder."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from app.logs import configure_logging
from app.settings import Settings


class Ingress:
    """Serves every `/api/v1/ml` route; builds its FastAPI app on the replica.

    Args:
        settings: resolved settings, with token hashes (see `app.bootstrap.prepare`).
        registry: the registry actor's handle.
        traffic: the traffic actor's handle.
        model_server: the model server's deployment handle.
        monitor: the monitor actor's handle (None: monitoring off).
        triton: the Triton server deployment's handle (None: no `triton` backend).
    """

    def __init__(
        self,
        settings: Settings,
        registry: Any,
        traffic: Any,
        model_server: Any,
        monitor: Any = None,
        triton: Any = None,
    ) -> None:
        self._settings = settings
        self._registry_handle = registry
        self._traffic_handle = traffic
        self._model_server = model_server
        self._monitor_handle = monitor
        self._triton = triton
        configure_logging(settings.log_level)

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Serve calls this on the replica, after `__init__`."""
        from app.adapters.health_probes import ArtifactStoreProbe, PingProbe, RayClusterProbe
        from app.adapters.mlflow_tracking import MlflowExperimentTracker
        from app.adapters.registry_actor_client import ActorModelRegistry
        from app.adapters.serve_invoker import (
            BackendInvoker,
            ServeModelInvoker,
            ServeTritonBackend,
        )
        from app.adapters.serve_metrics import ObservedRecorder
        from app.adapters.traffic_client import BufferedRecorder, RoutingCache, TrafficClient
        from app.adapters.vllm_backend import VllmBackend
        from app.api.factory import create_api
        from app.backends import Backends
        from app.bootstrap import training_jobs
        from app.core.routing import Backend
        from app.feature_store import FeatureInputs
        from app.llm.gateway import LlmGateway
        from app.prediction import Predictor

        mlflow, serving = self._settings.mlflow, self._settings.serving
        assert mlflow.tracking_uri and mlflow.artifact_root  # resolved by load_settings
        tracker = MlflowExperimentTracker(mlflow.tracking_uri, mlflow.artifact_root)
        registry = ActorModelRegistry(self._registry_handle)
        traffic = TrafficClient(self._traffic_handle)
        tables = RoutingCache(self._traffic_handle)
        recorder = BufferedRecorder(self._traffic_handle, serving.stats_flush_s)
        invokers = {Backend.RAY: ServeModelInvoker(self._model_server, serving.retries)}
        if self._triton is not None:
            invokers[Backend.TRITON] = ServeModelInvoker(self._triton, serving.retries)
        invoker = BackendInvoker(invokers)
        llm = VllmBackend(self._settings)
        backends = Backends(
            ServeTritonBackend(self._triton) if self._triton is not None else None,
            llm,
            tables,
            retire_after_s=serving.drain_window_s,
        )
        observed = ObservedRecorder(recorder)
        features = self._features()
        monitoring, prediction_log, monitor_background = self._monitoring(traffic)
        predictor = Predictor(
            tables,
            invoker,
            observed,
            serving.max_rows_per_request,
            feature_inputs=FeatureInputs(features, registry) if features is not None else None,
            log=prediction_log,
        )
        probes: tuple[Any, ...] = (
            RayClusterProbe(),
            PingProbe("mlflow_store", tracker.ping),
            ArtifactStoreProbe(mlflow.artifact_root),
            PingProbe("registry", registry.ping),
            PingProbe("traffic", traffic.ping),
            *([PingProbe("monitor", monitoring.ping)] if monitoring is not None else []),
        )
        # Serve's proxy assigns and echoes x-request-id; the app reuses it.
        return create_api(
            self._settings,
            tracker,
            probes,
            registry=registry,
            traffic=traffic,
            predictor=predictor,
            jobs=training_jobs(self._settings, registry, features),
            features=features,
            monitoring=monitoring,
            backends=backends,
            llm=LlmGateway(tables, llm, observed),
            background=(tables, recorder, *monitor_background),
            echo_request_id=False,
        )

    def _features(self) -> Any:
        import threading

        from app.bootstrap import feature_store
        from app.feature_store import Features

        settings = self._settings.features
        if not settings.enabled:
            return None
        store = feature_store(self._settings)
        # Feast's import and first registry read take seconds: warm up off the request path.
        threading.Thread(target=store.catalog, name="feast-warmup", daemon=True).start()
        return Features(store, settings.catalog_ttl_s)

    def _monitoring(self, traffic: Any) -> tuple[Any, Any, tuple[Any, ...]]:
        """The API's monitoring, the prediction log and what runs beside them (None, None,
        () when monitoring is off)."""
        if self._monitor_handle is None:
            return None, None, ()
        from app.adapters.monitor_client import MonitorClient, SampleRates
        from app.adapters.prediction_log import PredictionLog
        from app.monitoring import Monitoring

        config = self._settings.monitoring
        assert config.log_dir is not None  # resolved
        rates = SampleRates(self._monitor_handle, config.sample_rate, config.policy_poll_s)
        log = PredictionLog(
            config.log_dir, rates, flush_s=config.log_flush_s, batch_rows=config.log_batch_rows
        )
        client = MonitorClient(self._monitor_handle)
        return Monitoring(client, traffic, log), log, (rates, log)
