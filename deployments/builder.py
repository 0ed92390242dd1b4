"""The one place where plain classes become Serve deployments (import paths of serve_config.yaml).

Topology (replicas, autoscaling, resources) comes from `serve_config.yaml`; business
settings from `configs/`. Settings are loaded and validated here, at build time, so a bad
file fails `serve run` with its path instead of failing the first request.

No `from __future__ import annotations` here: Serve reads the builder's `args`
annotation as a class to validate the YAML `args:` against it.
"""

from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application

from app.bootstrap import prepare
from app.settings import Settings, load_settings
from deployments.ingress import Ingress
from deployments.mlflow_server import MlflowServer


class AppArgs(BaseModel):
    """The typed `args:` of both applications in serve_config.yaml."""

    model_config = ConfigDict(extra="forbid")

    config_dir: str = Field(
        default="configs", description="Directory of base.yaml and <env>.yaml (relative: cwd)."
    )
    env: str | None = Field(
        default=None, description="Configuration layer; default the ML_ENV variable, else dev."
    )


def _settings(args: AppArgs, *, announce: bool) -> Settings:
    return prepare(load_settings(args.config_dir, args.env), announce=announce)


def build_ml_app(args: AppArgs) -> Application:
    """The `ml` application: the API ingress."""
    settings = _settings(args, announce=True)
    deployment = serve.deployment(name="Ingress")(serve.ingress()(Ingress))
    return deployment.bind(settings)


def build_mlflow_app(args: AppArgs) -> Application:
    """The `mlflow` application: MLflow's tracking server and UI, behind the service's tokens."""
    settings = _settings(args, announce=False)
    deployment = serve.deployment(name="MlflowServer")(serve.ingress()(MlflowServer))
    return deployment.bind(settings)
