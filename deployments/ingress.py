"""The API ingress deployment: a plain class, made a Serve deployment by the builder."""

from __future__ import annotations

import sys
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
    """

    def __init__(self, settings: Settings, registry: Any, traffic: Any, model_server: Any) -> None:
        self._settings = settings
        self._registry_handle = registry
        self._traffic_handle = traffic
        self._model_server = model_server
        configure_logging(settings.log_level)

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Serve calls this on the replica, after `__init__`."""
        from app.adapters.health_probes import ArtifactStoreProbe, PingProbe, RayClusterProbe
        from app.adapters.mlflow_tracking import MlflowExperimentTracker
        from app.adapters.registry_actor_client import ActorModelRegistry
        from app.adapters.serve_invoker import ServeModelInvoker
        from app.adapters.traffic_client import BufferedRecorder, RoutingCache, TrafficClient
        from app.api.factory import create_api
        from app.feature_store import FeatureInputs
        from app.prediction import Predictor

        mlflow, serving = self._settings.mlflow, self._settings.serving
        assert mlflow.tracking_uri and mlflow.artifact_root  # resolved by load_settings
        tracker = MlflowExperimentTracker(mlflow.tracking_uri, mlflow.artifact_root)
        registry = ActorModelRegistry(self._registry_handle)
        traffic = TrafficClient(self._traffic_handle)
        tables = RoutingCache(self._traffic_handle)
        recorder = BufferedRecorder(self._traffic_handle, serving.stats_flush_s)
        invoker = ServeModelInvoker(self._model_server, serving.retries)
        features = self._features()
        predictor = Predictor(
            tables,
            invoker,
            recorder,
            serving.max_rows_per_request,
            feature_inputs=FeatureInputs(features, registry) if features is not None else None,
        )
        probes = (
            RayClusterProbe(),
            PingProbe("mlflow_store", tracker.ping),
            ArtifactStoreProbe(mlflow.artifact_root),
            PingProbe("registry", registry.ping),
            PingProbe("traffic", traffic.ping),
        )
        # Serve's proxy assigns and echoes x-request-id; the app reuses it.
        return create_api(
            self._settings,
            tracker,
            probes,
            registry=registry,
            traffic=traffic,
            predictor=predictor,
            jobs=self._jobs(registry, features),
            features=features,
            background=(tables, recorder),
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

    def _jobs(self, registry: Any, features: Any) -> Any:
        import ray

        from app.adapters.mlflow_job_runs import MlflowJobRuns
        from app.adapters.ray_jobs import RayJobsLauncher
        from app.training import TrainingJobs, code_version

        settings = self._settings
        assert settings.mlflow.tracking_uri and settings.training.workdir  # resolved
        env = {
            "ML_REGISTRY__ACTOR_NAME": settings.registry.actor_name,
            "ML_REGISTRY__NAMESPACE": settings.registry.namespace,
            "ML_CODE_VERSION": code_version(settings.training.workdir),
            "RAY_DATA_DISABLE_PROGRESS_BARS": "1",  # bars bury the log lines that matter
        }
        return TrainingJobs(
            RayJobsLauncher(settings.training.dashboard_url),
            MlflowJobRuns(settings.mlflow.tracking_uri),
            registry,
            ray.cluster_resources,
            sys.executable,
            {k: v for k, v in env.items() if v},
            settings.training.workdir,
            features,
        )
