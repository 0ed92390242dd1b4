"""The one place where plain classes become Serve deployments and Ray actors (the import
paths of serve_config.yaml).

Topology (replicas, autoscaling, resources) comes from `serve_config.yaml`; business
settings from `configs/`. Settings are loaded and validated here, at build time, so a bad
file fails `serve run` with its path instead of failing the first request. What each
class is built from comes from the composition root (`deployments.composition`), run in
the actor's or replica's own process; the builder passes the handles of the peers each
one talks to: registry <- traffic, registry <- monitor, and all of them <- the ingress.

No `from __future__ import annotations` here: Serve reads the builder's `args`
annotation as a class to validate the YAML `args:` against it.
"""

import functools
import time
from typing import Any

import ray
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application
from ray.serve.deployment import Deployment

from actors.monitor import Monitor
from actors.registry import Registry
from actors.traffic import Traffic
from app.settings import Settings, load_settings, settings_fingerprint
from deployments import composition
from deployments.ingress import Ingress
from deployments.mlflow_server import MlflowServer
from deployments.model_server import ModelServer
from deployments.startup import prepare
from deployments.triton_server import TritonServer

_ACTOR_START_S = 120


class AppArgs(BaseModel):
    """The typed `args:` of both applications in serve_config.yaml."""

    model_config = ConfigDict(extra="forbid")

    config_dir: str = Field(
        default="configs", description="Directory of base.yaml and <env>.yaml (relative: cwd)."
    )
    env: str | None = Field(
        default=None, description="Configuration layer; default the ML_ENV variable, else dev."
    )


def _settings(args: AppArgs, *, announce: bool, features: bool = True) -> Settings:
    return prepare(load_settings(args.config_dir, args.env), announce=announce, features=features)


def build_ml_app(args: AppArgs) -> Application:
    """The `ml` application: the API ingress and the model servers, with the registry,
    traffic and monitor actors behind them."""
    settings = _settings(args, announce=True)
    registry, traffic, monitor = state_actors(settings)
    server = model_server(settings).bind(
        settings.mlflow.tracking_uri, settings.serving.model_load_timeout_s, settings.log_level
    )
    triton = triton_server(settings).bind(settings)
    peers = composition.Peers(registry, traffic, server, monitor, triton)
    ingress = serve.deployment(name="Ingress")(serve.ingress()(Ingress))
    return ingress.bind(functools.partial(composition.ingress_app, settings, peers))


def build_mlflow_app(args: AppArgs) -> Application:
    """The `mlflow` application: MLflow's tracking server and UI, behind the service's tokens."""
    settings = _settings(args, announce=False, features=False)
    deployment = serve.deployment(name="MlflowServer")(serve.ingress()(MlflowServer))
    return deployment.bind(settings.mlflow, settings.auth, settings.state, settings.log_level)


def model_server(settings: Settings) -> Deployment:
    """The model server with Serve's multiplexing on `load`, and request batching on
    `predict_batch` when `serving.max_batch_size` is above 1."""
    config = settings.serving

    class MultiplexedModelServer(ModelServer):
        load = serve.multiplexed(max_num_models_per_replica=config.max_models_per_replica)(
            ModelServer.load
        )

    if config.max_batch_size > 1:
        batch: Any = serve.batch(
            max_batch_size=config.max_batch_size,
            batch_wait_timeout_s=config.batch_wait_timeout_s,
        )
        MultiplexedModelServer.predict_batch = batch(ModelServer.predict_batch)  # type: ignore[method-assign]
        MultiplexedModelServer.batched = True

    deployment: Deployment = serve.deployment(name="ModelServer")(MultiplexedModelServer)
    return deployment


def triton_server(settings: Settings) -> Deployment:
    """The `triton` backend's deployment, with Serve's multiplexing on `load` (a version is
    exported and loaded into a replica's Triton once, and its requests go there)."""

    class MultiplexedTritonServer(TritonServer):
        def __init__(self, settings: Settings) -> None:
            super().__init__(**composition.triton_parts(settings))

        load = serve.multiplexed(
            max_num_models_per_replica=settings.serving.max_models_per_replica
        )(TritonServer.load)

    deployment: Deployment = serve.deployment(
        name="TritonServer", health_check_period_s=2, health_check_timeout_s=10
    )(MultiplexedTritonServer)
    return deployment


class RegistryActor(Registry):
    """The registry, built in its actor from settings."""

    def __init__(self, settings: Settings) -> None:
        self._fingerprint = fingerprint(settings)
        super().__init__(**composition.registry_parts(settings))

    def settings_fingerprint(self) -> str:
        """Which settings (and peers) this actor runs with."""
        return self._fingerprint


class TrafficActor(Traffic):
    """The traffic actor, built in its actor from settings and the registry's handle."""

    def __init__(self, settings: Settings, registry: Any) -> None:
        self._fingerprint = fingerprint(settings, registry)
        super().__init__(**composition.traffic_parts(settings, registry))

    def settings_fingerprint(self) -> str:
        """Which settings (and peers) this actor runs with."""
        return self._fingerprint


class MonitorActor(Monitor):
    """The monitor, built in its actor from settings and the registry's handle."""

    def __init__(self, settings: Settings, registry: Any) -> None:
        self._fingerprint = fingerprint(settings, registry)
        super().__init__(**composition.monitor_parts(settings, registry))

    def settings_fingerprint(self) -> str:
        """Which settings (and peers) this actor runs with."""
        return self._fingerprint


def state_actors(settings: Settings) -> tuple[Any, Any, Any | None]:
    """The registry, traffic and monitor actors (the monitor when monitoring is enabled),
    started together: each is a new process that imports the service for seconds, and
    the traffic and monitor actors need only the registry's handle, not its answer. One
    that runs stale (other settings, or a replaced registry) is replaced (`settle_actor`)."""
    names = (
        settings.registry.actor_name,
        settings.serving.traffic_actor_name,
        settings.monitoring.actor_name,
    )
    registry = launch_actor(RegistryActor, names[0], settings)
    traffic = launch_actor(TrafficActor, names[1], settings, registry)
    monitor = (
        launch_actor(MonitorActor, names[2], settings, registry)
        if settings.monitoring.enabled
        else None
    )
    registry = settle_actor(registry, RegistryActor, names[0], settings)
    traffic = settle_actor(traffic, TrafficActor, names[1], settings, registry)
    if monitor is not None:
        monitor = settle_actor(monitor, MonitorActor, names[2], settings, registry)
    return registry, traffic, monitor


def registry_actor(settings: Settings) -> Any:
    """The registry actor (see `detached_actor`)."""
    return detached_actor(RegistryActor, settings.registry.actor_name, settings)


def fingerprint(settings: Settings, *peers: Any) -> str:
    """The settings an actor runs with and the actors it talks to: a running actor with
    another fingerprint is replaced (also when a peer it holds was replaced)."""
    return settings_fingerprint(settings, *(peer._actor_id.hex() for peer in peers))


def detached_actor(cls: type, name: str, settings: Settings, *peers: Any) -> Any:
    """A named, detached actor: it outlives redeploys of the Serve application and is
    restarted by Ray when it dies (its state is in the database; Ray gives the restarted
    actor the same settings and peer handles). One running with other settings or peers
    is replaced. Returns once the actor answers."""
    return settle_actor(launch_actor(cls, name, settings, *peers), cls, name, settings, *peers)


def launch_actor(cls: type, name: str, settings: Settings, *peers: Any) -> Any:
    """The handle of the named, detached actor (see `detached_actor`), running or asked
    for, without waiting for it: `settle_actor` waits and replaces a stale one."""
    remote_class: Any = ray.remote(cls)
    return remote_class.options(**_actor_options(name, settings)).remote(settings, *peers)


def settle_actor(handle: Any, cls: type, name: str, settings: Settings, *peers: Any) -> Any:
    """`handle` once its actor answers, or a new actor in its place when it runs with
    other settings or peers than these (or died starting, e.g. holding a peer that was
    replaced meanwhile)."""
    try:
        running = ray.get(handle.settings_fingerprint.remote(), timeout=_ACTOR_START_S)
    except ray.exceptions.RayActorError:
        running = None
    if running != fingerprint(settings, *peers):
        ray.kill(handle, no_restart=True)
        _wait_until_gone(name, settings.registry.namespace)
        handle = launch_actor(cls, name, settings, *peers)
    ray.get(handle.ping.remote(), timeout=_ACTOR_START_S)  # up, its background work started
    return handle


def _actor_options(name: str, settings: Settings) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": settings.registry.namespace,
        "lifetime": "detached",
        "get_if_exists": True,
        "max_restarts": -1,
        "max_task_retries": 0,
        "num_cpus": 0,
        # on a cluster, where the configuration says (by a node group's resource)
        "resources": dict(settings.placement.state_actors),
    }


def _wait_until_gone(name: str, namespace: str) -> None:
    deadline = time.monotonic() + _ACTOR_START_S
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name, namespace=namespace)
        except ValueError:
            return
        time.sleep(0.2)
    raise TimeoutError(f"actor {name} did not stop")
