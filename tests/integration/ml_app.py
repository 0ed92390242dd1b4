"""The `ml` application on the session's Ray cluster, as `serve_config.yaml` builds it,
with its own data directory, tokens and actors (removed afterwards)."""

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
from testkit.service import free_port, wait_routed
from testkit.settings import CONFIGS


@dataclass(frozen=True)
class RunningApp:
    url: str
    tokens: Tokens
    settings: Settings


@contextlib.contextmanager
def running_ml_app(
    data_dir: Path, env: dict[str, str] | None = None, *, mlflow: bool = False
) -> Iterator[RunningApp]:
    """Start Serve on a free port and the `ml` app (and with `mlflow`, the `mlflow` app)
    with `env` (ML_* variables) on top of the defaults; stop Serve and kill the app's
    actors afterwards."""
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
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
        serve.run(build_ml_app(args), name="ml", route_prefix="/")
        if mlflow:
            serve.run(build_mlflow_app(args), name="mlflow", route_prefix="/mlflow")
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
        serve.shutdown()
        for name in actors.values():
            with contextlib.suppress(ValueError):
                ray.kill(ray.get_actor(name, namespace="ml-service"), no_restart=True)
