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
    """

    def __init__(self, settings: Settings, registry: Any) -> None:
        self._settings = settings
        self._registry_handle = registry
        configure_logging(settings.log_level)

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Serve calls this on the replica, after `__init__`."""
        from app.adapters.health_probes import ArtifactStoreProbe, PingProbe, RayClusterProbe
        from app.adapters.mlflow_tracking import MlflowExperimentTracker
        from app.adapters.registry_actor_client import ActorModelRegistry
        from app.api.factory import create_api

        mlflow = self._settings.mlflow
        assert mlflow.tracking_uri and mlflow.artifact_root  # resolved by load_settings
        tracker = MlflowExperimentTracker(mlflow.tracking_uri, mlflow.artifact_root)
        registry = ActorModelRegistry(self._registry_handle)
        probes = (
            RayClusterProbe(),
            PingProbe("mlflow_store", tracker.ping),
            ArtifactStoreProbe(mlflow.artifact_root),
            PingProbe("registry", registry.ping),
        )
        # Serve's proxy assigns and echoes x-request-id; the app reuses it.
        return create_api(self._settings, tracker, probes, registry=registry, echo_request_id=False)
