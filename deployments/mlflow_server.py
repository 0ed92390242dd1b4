"""MLflow's tracking server and UI as a Serve deployment, behind the service's tokens."""

from __future__ import annotations

import os
import sys

from starlette.types import ASGIApp

from app.logs import configure_logging
from app.settings import AuthSettings, MlflowSettings, StateSettings
from deployments import composition

# The private variables `mlflow server` sets for its workers (mlflow/server/__init__.py).
_BACKEND_STORE = "_MLFLOW_SERVER_FILE_STORE"
_REGISTRY_STORE = "_MLFLOW_SERVER_REGISTRY_STORE"
_ARTIFACT_ROOT = "_MLFLOW_SERVER_ARTIFACT_ROOT"
_SERVE_ARTIFACTS = "_MLFLOW_SERVER_SERVE_ARTIFACTS"
_ARTIFACT_DESTINATION = "_MLFLOW_SERVER_ARTIFACT_DESTINATION"
_STATIC_PREFIX = "_MLFLOW_STATIC_PREFIX"
_ALLOWED_HOSTS = "MLFLOW_SERVER_ALLOWED_HOSTS"


class MlflowServer:
    """Runs MLflow's own FastAPI/Flask server app in the replica, at the configured prefix.

    MLflow reads its store settings from the environment when `mlflow.server` is first
    imported, so the constructor sets them and the app is built afterwards, on the replica
    (MLflow's app does not pickle).

    Args:
        mlflow: the MLflow stores and the UI prefix.
        auth: who may call (the known tokens, an OIDC issuer).
        state: the service database (the tokens made through the API).
        log_level: the service log level.
    """

    def __init__(
        self, mlflow: MlflowSettings, auth: AuthSettings, state: StateSettings, log_level: str
    ) -> None:
        if "mlflow.server" in sys.modules:
            raise RuntimeError("mlflow.server was imported before its settings were applied")
        configure_logging(log_level)
        os.environ[_BACKEND_STORE] = mlflow.tracking_uri
        os.environ[_REGISTRY_STORE] = mlflow.tracking_uri
        # New experiments keep real locations under the root (the service's processes read
        # them directly); clients see them proxied (the gateway's ArtifactLocations).
        os.environ[_ARTIFACT_ROOT] = mlflow.artifact_root
        os.environ[_SERVE_ARTIFACTS] = "true"
        os.environ[_ARTIFACT_DESTINATION] = mlflow.artifact_root
        os.environ[_STATIC_PREFIX] = mlflow.ui_prefix
        if mlflow.allowed_hosts:
            os.environ[_ALLOWED_HOSTS] = ",".join(mlflow.allowed_hosts)
        self._prefix = mlflow.ui_prefix
        self._artifact_root = mlflow.artifact_root
        self._tokens = composition.token_book(auth, state.database_url)

    def __serve_build_asgi_app__(self) -> ASGIApp:
        """Serve calls this on the replica, after `__init__`."""
        from mlflow.server.fastapi_app import app as mlflow_app

        from app.api.mlflow_gateway import ArtifactLocations, MlflowGateway

        return MlflowGateway(
            mlflow_app,
            prefix=self._prefix,
            token_book=self._tokens,
            locations=ArtifactLocations(self._artifact_root),
        )
