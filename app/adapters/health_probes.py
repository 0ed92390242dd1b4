"""Health probes of what the service stands on: MLflow's stores, the registry, Ray."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from app.ports import ComponentHealth, HealthStatus

log = logging.getLogger(__name__)


def _timed(name: str, check: Callable[[], str], *, required: bool = True) -> ComponentHealth:
    """Run `check`; DOWN with the exception's type (never its text, which may hold secrets)."""
    started = time.perf_counter()
    try:
        detail = check()
        status = HealthStatus.OK
    except Exception as exc:
        log.warning("health probe %s failed", name, exc_info=True)
        detail, status = f"{type(exc).__name__}", HealthStatus.DOWN
    return ComponentHealth(
        name, status, detail, (time.perf_counter() - started) * 1000, required=required
    )


class PingProbe:
    """A component is healthy when its `ping` returns (the MLflow store, the registry actor).

    Args:
        name: the component's name in the report.
        ping: raises when the component cannot answer.
        required: whether readiness depends on it.
    """

    def __init__(self, name: str, ping: Callable[[], object], *, required: bool = True) -> None:
        self.name = name
        self._ping = ping
        self._required = required

    def probe(self) -> ComponentHealth:
        """See `HealthProbe.probe`."""

        def check() -> str:
            self._ping()
            return ""

        return _timed(self.name, check, required=self._required)


class ArtifactStoreProbe:
    """The artifact root is reachable (a writable directory, or a listable bucket)."""

    name = "artifact_store"

    def __init__(self, artifact_root: str) -> None:
        self._root = artifact_root

    def probe(self) -> ComponentHealth:
        """See `HealthProbe.probe`."""
        return _timed(self.name, self._check)

    def _check(self) -> str:
        if "://" not in self._root or self._root.startswith("file://"):
            path = Path(self._root.removeprefix("file://"))
            if not path.is_dir():
                raise FileNotFoundError("artifact root is missing")
            probe_file = path / ".health-probe"
            probe_file.write_bytes(b"ok")
            probe_file.unlink()
            return "local directory, writable"
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        get_artifact_repository(self._root).list_artifacts("")
        return self._root.split("://", 1)[0]


class RayClusterProbe:
    """This process is connected to a Ray cluster whose nodes are alive."""

    name = "ray"

    def probe(self) -> ComponentHealth:
        """See `HealthProbe.probe`."""
        return _timed(self.name, self._check)

    @staticmethod
    def _check() -> str:
        import ray

        if not ray.is_initialized():
            raise ConnectionError("not connected to Ray")
        alive = [n for n in ray.nodes() if n.get("Alive")]
        if not alive:
            raise ConnectionError("no live Ray node")
        return f"{len(alive)} node(s) alive"
