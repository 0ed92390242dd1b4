"""The `ml` application on the session's Ray cluster, as `serve_config.yaml` deploys it
(behind Serve's HAProxy ingress, with the config's options for each deployment), with its
own data directory, tokens and actors (removed afterwards)."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ray

from app.settings import Settings, load_settings
from deployments.builder import AppArgs, build_ml_app, build_mlflow_app
from testkit.auth import Tokens
from testkit.ingress import with_shipped_options
from testkit.service import free_port, start_serve, wait_routed
from testkit.settings import CONFIGS

# Serve runs once per session, on this port: Ray 2.60's HAProxy mode does not survive
# serve.start after serve.shutdown in one cluster (the next start talks to a dead
# controller), so the modules deploy and delete their applications instead.
_serve_port: int | None = None


@dataclass(frozen=True)
class RunningApp:
    url: str
    tokens: Tokens
    settings: Settings


@contextlib.contextmanager
def running_ml_app(
    data_dir: Path, env: dict[str, str] | None = None, *, mlflow: bool = False
) -> Iterator[RunningApp]:
    """Start the `ml` app (and with `mlflow`, the `mlflow` app) on the session's Serve
    with `env` (ML_* variables) on top of the defaults; delete every application and kill
    the app's actors afterwards."""
    from ray import serve

    port = serve_port()
    tokens = Tokens()
    suffix = uuid.uuid4().hex[:6]
    actors = {
        "ML_REGISTRY__ACTOR_NAME": f"registry-{suffix}",
        "ML_SERVING__TRAFFIC_ACTOR_NAME": f"traffic-{suffix}",
        "ML_MONITORING__ACTOR_NAME": f"monitor-{suffix}",
    }
    values = {
        "ML_DATA_DIR": str(data_dir),
        "ML_AUTH__TOKENS": json.dumps(tokens.entries()),
        **actors,
        **(env or {}),
    }
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        settings = load_settings(CONFIGS, "dev")
        args = AppArgs(config_dir=str(CONFIGS))
        serve.run(with_shipped_options(build_ml_app(args), "ml"), name="ml", route_prefix="/")
        if mlflow:
            mlflow_app = with_shipped_options(build_mlflow_app(args), "mlflow")
            serve.run(mlflow_app, name="mlflow", route_prefix="/mlflow")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    url = f"http://127.0.0.1:{port}"
    wait_routed(url, ("/api/v1/ml/health/live", *(("/mlflow/health",) if mlflow else ())))
    try:
        yield RunningApp(url, tokens, settings)
    finally:
        # the app's own and those it started (an LLM version's engine is an app)
        for name in serve.status().applications:
            serve.delete(name)
        for name in actors.values():
            with contextlib.suppress(ValueError):
                ray.kill(ray.get_actor(name, namespace="ml-service"), no_restart=True)


def serve_port() -> int:
    """Serve's HTTP port in this session's cluster, started on the first call."""
    global _serve_port
    if _serve_port is None:
        port = free_port()
        start_serve(port)
        _serve_port = port
    return _serve_port


def stop_serve() -> None:
    """Shut Serve down (at the session's end, before Ray)."""
    from ray import serve

    global _serve_port
    if _serve_port is not None:
        serve.shutdown()
        _serve_port = None
