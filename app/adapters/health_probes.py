"""Health probes of what the service stands on: MLflow's stores, the file storage, the
feature store's online store, the actors, Ray."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from app.ports.health import ComponentHealth, HealthStatus
from app.ports.storage import Storage

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
            from pyarrow import fs

            local, root = fs.LocalFileSystem(), self._root.removeprefix("file://")
            if local.get_file_info(root).type != fs.FileType.Directory:
                raise FileNotFoundError("artifact root is missing")
            probe_file = f"{root}/.health-probe"
            with local.open_output_stream(probe_file) as stream:
                stream.write(b"ok")
            local.delete_file(probe_file)
            return "local directory, writable"
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        get_artifact_repository(self._root).list_artifacts("")
        return self._root.split("://", 1)[0]


class StorageProbe:
    """The file storage answers: a small file is written, read back and deleted."""

    name = "storage"

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def probe(self) -> ComponentHealth:
        """See `HealthProbe.probe`."""
        return _timed(self.name, self._check)

    def _check(self) -> str:
        key = f".health/{uuid.uuid4().hex}"
        self._storage.write_bytes(key, b"ok")
        try:
            if self._storage.read_bytes(key) != b"ok":
                raise OSError("read back other bytes than written")
        finally:
            self._storage.delete(key)
        return self._storage.root.split("://", 1)[0] if "://" in self._storage.root else "local"


class FeatureOnlineStoreProbe:
    """The feature store's online store (Redis in production) answers a read of one
    entity key; required, as predictions by entity key and `/features/serve` need it.

    Args:
        read: reads one key (a value or none: either way the store answered) and returns
            the store's type; raises when the store cannot answer. Its client's timeouts
            bound it (`features.online_timeout_s`), well within `/health`'s own limit.
    """

    name = "feature_online_store"

    def __init__(self, read: Callable[[], str]) -> None:
        self._read = read

    def probe(self) -> ComponentHealth:
        """See `HealthProbe.probe`."""
        return _timed(self.name, self._read)


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
