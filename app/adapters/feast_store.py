"""The feature store over Feast: the repository under `configs/feature_repo`, applied
idempotently; catalog, online features, materialization and point-in-time training sets.

The offline data (the parquet files the feature views read) lives in the file storage
(`feast/` under its root): DuckDB, Feast's offline store here, reads local files only
(its S3 extension is downloaded at run time), so every process that reads it works on a
node-local copy, refreshed when the stored file changes (`OfflineFiles`). On a local
storage the copy is the storage's own directory.

Feast imports take seconds (it imports torch): Feast is imported inside the functions
that use it, never when this module is.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from pyarrow import fs as pafs

from app.adapters.local_files import exclusive, write_parquet
from app.adapters.storage import parquet_bytes
from app.core.features import (
    Catalog,
    EntityInfo,
    FeatureInfo,
    FeatureServiceInfo,
    FeatureViewInfo,
    OnlineFeatures,
    ValueStatus,
    freshness,
)
from app.errors import ErrorCode, InvalidInput, Unavailable
from app.ports.storage import Storage
from app.samples import feature_snapshots

log = logging.getLogger(__name__)

FEAST_DIR_ENV = "ML_FEAST_DIR"
STATS_FILE = "customer_stats.parquet"
VIEW_CACHE_S = 5.0  # how long feature view definitions are reused (as Feast's registry cache)
LABELS_FILE = "churn_labels.parquet"
OFFLINE_PREFIX = "feast"  # the offline data's folder in the file storage
ONLINE_TIMEOUT_S = 2.0  # Redis connect and read timeout, unless its connection string sets one

# Feast's FieldStatus numbers (feast.protos.feast.serving.ServingService_pb2).
_STATUSES = {
    1: ValueStatus.PRESENT,
    2: ValueStatus.NULL_VALUE,
    3: ValueStatus.NOT_FOUND,
    4: ValueStatus.OUTSIDE_MAX_AGE,
}


def write_demo_data(
    directory: Path, customers: int = 1000, days: int = 10, end: datetime | None = None
) -> None:
    """The demo snapshots and labels, once (kept across restarts)."""
    directory.mkdir(parents=True, exist_ok=True)
    end = end or datetime.now(UTC)
    stats, labels = directory / STATS_FILE, directory / LABELS_FILE
    if not stats.exists():
        write_parquet(feature_snapshots.customer_stats(customers, days, end), stats)
        log.info("wrote demo feature data: %d customers x %d days -> %s", customers, days, stats)
    if not labels.exists():
        write_parquet(feature_snapshots.labels(customers, end), labels)


class OfflineFiles:
    """The feature store's offline data in the file storage, as a directory on this node.

    With a local storage the directory is the storage's own (`<data_dir>/feast` by
    default: nothing is copied). With an S3 storage it is `<cache_root>/feast`, mirrored
    from the bucket whenever `directory` is asked: a file whose ETag (else size and time)
    changed is downloaded again, one gone from the bucket is removed. Each file is
    replaced whole, and processes on one node take turns (a lock file), so a reader sees
    the old file or the new one. The path must be the same on every node (the feature
    views' sources name it in the registry): it is, as every node has the same settings.

    Args:
        storage: the service's file storage.
        cache_root: the storage's node-local cache (`storage.cache_dir`).
        prefix: the offline data's folder in the storage.
    """

    def __init__(self, storage: Storage, cache_root: Path, prefix: str = OFFLINE_PREFIX) -> None:
        self._storage = storage
        self._prefix = prefix.strip("/")
        self._cache = cache_root / self._prefix

    def write_demo(
        self, customers: int = 1000, days: int = 10, end: datetime | None = None
    ) -> None:
        """The demo snapshots and labels into the storage, each only if missing."""
        end = end or datetime.now(UTC)
        stats, labels = f"{self._prefix}/{STATS_FILE}", f"{self._prefix}/{LABELS_FILE}"
        if not self._storage.exists(stats):
            frame = feature_snapshots.customer_stats(customers, days, end)
            self._storage.write_bytes(stats, parquet_bytes(frame))
            log.info(
                "wrote demo feature data: %d customers x %d days -> %s",
                customers,
                days,
                self._storage.uri(stats),
            )
        if not self._storage.exists(labels):
            self._storage.write_bytes(
                labels, parquet_bytes(feature_snapshots.labels(customers, end))
            )

    def directory(self) -> Path:
        """The local directory holding the offline files as they are stored now."""
        filesystem, base = self._storage.locate(self._prefix)
        if isinstance(filesystem, pafs.LocalFileSystem):
            local = Path(base)
            local.mkdir(parents=True, exist_ok=True)
            return local
        self._cache.mkdir(parents=True, exist_ok=True)
        with exclusive(self._cache / ".lock"):
            self._mirror(filesystem, base)
        return self._cache

    def _mirror(self, filesystem: pafs.FileSystem, base: str) -> None:
        manifest = self._cache / ".versions.json"
        known: dict[str, str] = json.loads(manifest.read_text()) if manifest.exists() else {}
        current: dict[str, str] = {}
        for stored in self._storage.files(self._prefix):
            name = stored.key[len(self._prefix) :].lstrip("/")
            target = self._cache / name
            with filesystem.open_input_stream(f"{base}/{name}") as source:  # a HEAD request
                version = _version(source.metadata(), stored.size, stored.modified)
                if known.get(name) != version or not target.exists():
                    _copy(source, target)
                    log.info("offline feature data %s -> %s", self._storage.uri(stored.key), target)
            current[name] = version
        for name in known.keys() - current.keys():
            (self._cache / name).unlink(missing_ok=True)
        if current != known:
            partial = manifest.with_name(f"{manifest.name}.{uuid.uuid4().hex[:8]}.tmp")
            partial.write_text(json.dumps(current, sort_keys=True))
            partial.replace(manifest)


def _version(metadata: Mapping[Any, Any], size: int, modified: float) -> str:
    """What identifies a stored file's content: its ETag (S3), else its size and time."""
    found = {
        (k.decode() if isinstance(k, bytes) else str(k)).lower(): v for k, v in metadata.items()
    }
    etag = found.get("etag")
    if etag:
        return f"etag:{etag.decode() if isinstance(etag, bytes) else etag}"
    return f"size:{size}:{modified}"


def _copy(source: Any, target: Path) -> None:
    """`source` (a pyarrow stream) into `target`, replacing it whole."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(partial, "wb") as out:
            while block := source.read(1 << 20):
                out.write(block)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


class FeastFeatures:
    """One Feast feature store, as the service uses it.

    Args:
        repo_dir: the feature repository (`feature_store.yaml` and `features.py`).
        feast_dir: the embedded registry and online store's directory (`${ML_FEAST_DIR}`
            in `feature_store.yaml`; created only when the config names it) and, without
            `offline`, the offline data's too.
        config_file: the repository's config file name (`feature_store.yaml`, or the
            production one).
        clock: now, for freshness (tests inject one).
        offline: the offline data in the file storage (None: the files in `feast_dir`).
        online_timeout_s: Redis's connect and read timeouts, where the online store's
            connection string sets none.
    """

    def __init__(
        self,
        repo_dir: Path,
        feast_dir: Path,
        config_file: str = "feature_store.yaml",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        offline: OfflineFiles | None = None,
        online_timeout_s: float = ONLINE_TIMEOUT_S,
    ) -> None:
        self.repo_dir = repo_dir
        self.feast_dir = feast_dir
        self.config_file = config_file
        self._clock = clock
        self._offline = offline
        self._online_timeout_s = online_timeout_s
        self._lock = threading.Lock()
        # Feast's DuckDB offline store shares one DuckDB connection per process, which
        # refuses a second call while one runs ("connection is busy"): its reads take turns.
        self._offline_lock = threading.Lock()
        self._store: Any = None
        self._definitions: tuple[float, dict[str, Any], dict[str, Any]] | None = None

    def start(self, demo_data: bool = True) -> None:
        """Write the demo data (if asked and missing), then apply the repository's
        definitions: unchanged definitions change nothing, so every start may apply."""
        if demo_data:
            if self._offline is not None:
                self._offline.write_demo()
            else:
                write_demo_data(self.feast_dir)
        os.environ[FEAST_DIR_ENV] = str(self.offline_dir())  # features.py's sources read it
        store = self.store
        objects = _definitions(self.repo_dir / "features.py")
        store.apply(objects)
        log.info("feature repository %s applied (%d objects)", self.repo_dir, len(objects))

    def offline_dir(self) -> Path:
        """The offline data as local files, up to date with the storage (Feast's offline
        store reads the sources' paths, which name this directory)."""
        if self._offline is None:
            self.feast_dir.mkdir(parents=True, exist_ok=True)
            return self.feast_dir
        return self._offline.directory()

    @property
    def store(self) -> Any:
        """Feast's FeatureStore on this repository."""
        with self._lock:
            if self._store is None:
                from feast import FeatureStore

                store = FeatureStore(repo_path=str(self.repo_dir), config=self._config())
                _bound_redis_retries(store)
                self._store = store
            return self._store

    def _config(self) -> Any:
        """The repository's config with `${ML_FEAST_DIR}` as this store's directory (not
        the process's environment: a process may hold stores of several directories),
        other variables from the environment; a Redis online store gets timeouts."""
        import yaml
        from feast.repo_config import RepoConfig

        path = self.repo_dir / self.config_file
        text = path.read_text()
        if "${" + FEAST_DIR_ENV + "}" in text:
            self.feast_dir.mkdir(parents=True, exist_ok=True)
            text = text.replace("${" + FEAST_DIR_ENV + "}", str(self.feast_dir))
        raw = yaml.safe_load(os.path.expandvars(text))
        online = raw.get("online_store")
        if isinstance(online, dict) and online.get("type") == "redis":
            online["connection_string"] = redis_connection(
                str(online.get("connection_string", "localhost:6379")), self._online_timeout_s
            )
        config = RepoConfig(**raw)
        config.repo_path = self.repo_dir
        return config

    def catalog(self) -> Catalog:
        """Entities, views (with freshness), on-demand views and feature services."""
        store = self.store
        now = self._clock()
        entities = {e.name: e for e in store.list_entities()}
        views = []
        keys_of: dict[str, tuple[str, ...]] = {}
        for view in store.list_feature_views():
            keys = tuple(k for name in view.entities for k in _join_keys(entities, name))
            keys_of[view.name] = keys
            last = _last_materialized(view)
            views.append(
                FeatureViewInfo(
                    name=view.name,
                    entities=tuple(view.entities),
                    join_keys=keys,
                    features=tuple(_feature(f) for f in view.features),
                    ttl=view.ttl or None,
                    source=_source(view.batch_source),
                    on_demand=False,
                    description=view.description,
                    tags=dict(view.tags),
                    last_materialized=last,
                    freshness=freshness(last, view.ttl or None, now),
                )
            )
        for odfv in store.list_on_demand_feature_views():
            sources = [p.name for p in odfv.source_feature_view_projections.values()]
            keys = tuple(dict.fromkeys(k for s in sources for k in keys_of.get(s, ())))
            inputs = tuple(f.name for r in odfv.source_request_sources.values() for f in r.schema)
            views.append(
                FeatureViewInfo(
                    name=odfv.name,
                    entities=(),
                    join_keys=keys,
                    features=tuple(_feature(f) for f in odfv.features),
                    ttl=None,
                    source=None,
                    on_demand=True,
                    description=odfv.description,
                    tags=dict(odfv.tags),
                    last_materialized=None,
                    freshness=None,
                    request_inputs=inputs,
                )
            )
        services = tuple(
            FeatureServiceInfo(
                name=service.name,
                features=tuple(
                    f"{p.name_to_use()}:{f.name}"
                    for p in service.feature_view_projections
                    for f in p.features
                ),
                description=service.description,
            )
            for service in store.list_feature_services()
        )
        return Catalog(
            project=store.project,
            entities=tuple(
                EntityInfo(e.name, (e.join_key,), e.value_type.name, e.description)
                for e in entities.values()
            ),
            feature_views=tuple(sorted(views, key=lambda v: v.name)),
            feature_services=tuple(sorted(services, key=lambda s: s.name)),
        )

    def online(
        self, entity_rows: Sequence[Mapping[str, Any]], features: Sequence[str]
    ) -> OnlineFeatures:
        """Online values of `features` ("view:feature") for the rows, with statuses.

        Plain feature views are read with the provider's `online_read` (Feast's own online
        store code, without the SDK's per-request registry and response building: 2x less
        time for 100 rows); on-demand views go through `get_online_features`."""
        views, entities = self._online_definitions()
        by_view: dict[str, list[str]] = {}
        for ref in features:
            name, _, feature = ref.partition(":")
            by_view.setdefault(name, []).append(feature)
        with _online_store_errors():
            if all(name in views for name in by_view):
                return self._read(views, entities, by_view, entity_rows, features)
            return self._sdk_online(entity_rows, features)

    def ping(self) -> str:
        """Read one (made-up) entity key of a feature view from the online store: the
        store answers, with or without a value. Returns the online store's type.

        Raises:
            Exception: the store's own (redis.ConnectionError, TimeoutError, ...).
        """
        views, entities = self._online_definitions()
        store = self.store
        kind = str(getattr(store.config.online_store, "type", "online"))
        view = next((v for v in views.values() if v.online and v.features), None)
        if view is None:
            return f"{kind}, no online feature view"
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey

        join_keys = [k for entity in view.entities for k in _join_keys(entities, entity)]
        fields = [_value_type(entities, view, k) for k in join_keys]
        values = [_proto_value(_PROBE_VALUES.get(f, ""), f, "probe") for f in fields]
        store._get_provider().online_read(
            config=store.config,
            table=view,
            entity_keys=[EntityKey(join_keys=join_keys, entity_values=values)],
            requested_features=[view.features[0].name],
        )
        return kind

    def _online_definitions(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The plain feature views and the entities, re-read from the registry every few
        seconds (not on every online read)."""
        now = time.monotonic()
        cached = self._definitions
        if cached is None or now - cached[0] > VIEW_CACHE_S:
            store = self.store
            views = {v.name: v for v in store.list_feature_views()}
            entities = {e.name: e for e in store.list_entities()}
            cached = self._definitions = (now, views, entities)
        return cached[1], cached[2]

    def _read(
        self,
        views: Mapping[str, Any],
        entities: Mapping[str, Any],
        by_view: Mapping[str, list[str]],
        entity_rows: Sequence[Mapping[str, Any]],
        features: Sequence[str],
    ) -> OnlineFeatures:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey

        store = self.store
        provider = store._get_provider()
        rows: list[dict[str, Any]] = [dict(r) for r in entity_rows]
        statuses: list[dict[str, ValueStatus]] = [{} for _ in entity_rows]
        keys_seen: list[str] = []
        for name, wanted in by_view.items():
            view = views[name]
            join_keys = [k for entity in view.entities for k in _join_keys(entities, entity)]
            keys_seen.extend(k for k in join_keys if k not in keys_seen)
            types = {k: _value_type(entities, view, k) for k in join_keys}
            entity_keys = [
                EntityKey(
                    join_keys=join_keys,
                    entity_values=[
                        _proto_value(row[k], types[k], f"entities[{i}].{k}") for k in join_keys
                    ],
                )
                for i, row in enumerate(entity_rows)
            ]
            found = provider.online_read(
                config=store.config,
                table=view,
                entity_keys=entity_keys,
                requested_features=list(wanted),  # Redis appends its timestamp key to it
            )
            for index, (_, values) in enumerate(found):
                for feature in wanted:
                    ref = f"{name}:{feature}"
                    value = (values or {}).get(feature)
                    kind = value.WhichOneof("val") if value is not None else None
                    rows[index][ref] = getattr(value, kind) if kind else None
                    statuses[index][ref] = (
                        ValueStatus.NOT_FOUND
                        if values is None
                        else ValueStatus.PRESENT
                        if kind
                        else ValueStatus.NULL_VALUE
                    )
        columns = (*keys_seen, *features)
        return OnlineFeatures(
            tuple(columns),
            tuple({c: row.get(c) for c in columns} for row in rows),
            tuple(statuses),
        )

    def _sdk_online(
        self, entity_rows: Sequence[Mapping[str, Any]], features: Sequence[str]
    ) -> OnlineFeatures:
        response = self.store.get_online_features(
            features=list(features), entity_rows=[dict(r) for r in entity_rows]
        )
        proto = response.proto
        names = list(proto.metadata.feature_names.val)
        values = response.to_dict()
        rows: list[dict[str, Any]] = [{} for _ in entity_rows]
        statuses: list[dict[str, ValueStatus]] = [{} for _ in entity_rows]
        by_name = {ref.partition(":")[2]: ref for ref in features}
        for column, result in zip(names, proto.results, strict=True):
            key = by_name.get(column, column)
            for index, status in enumerate(result.statuses):
                rows[index][key] = _plain(values[column][index])
                if key in by_name.values():
                    statuses[index][key] = _STATUSES.get(int(status), ValueStatus.NOT_FOUND)
        columns = tuple(by_name.get(n, n) for n in names)
        return OnlineFeatures(columns, tuple(rows), tuple(statuses))

    def materialize(
        self, end: datetime | None = None, start: datetime | None = None
    ) -> list[tuple[str, datetime, datetime]]:
        """Materialization up to `end` (now): incremental, each view from where it last
        stopped (or its TTL back, the first time), or from `start` when given. Returns
        (view, start, end) per view.

        Raises:
            Unavailable: the online store cannot be reached.
        """
        end = end or self._clock()
        self.offline_dir()
        with self._offline_lock, _online_store_errors():
            done = self._materialize(end) if start is None else self._ranged(start, end)
        log.info("materialized %d feature view(s) up to %s", len(done), end.isoformat())
        return done

    def _ranged(self, start: datetime, end: datetime) -> list[tuple[str, datetime, datetime]]:
        store = self.store
        store.materialize(start_date=start, end_date=end)
        return [(view.name, start, end) for view in store.list_feature_views()]

    def _materialize(self, end: datetime) -> list[tuple[str, datetime, datetime]]:
        store = self.store
        views = store.list_feature_views()
        before = {v.name: _last_materialized(v) for v in views}
        for view in views:  # a first time: from `end`'s TTL back (Feast: the clock's)
            if before[view.name] is None and view.ttl:
                began = end - view.ttl
                store.materialize(start_date=began, end_date=end, feature_views=[view.name])
        again = [v.name for v in views if before[v.name] is not None or not v.ttl]
        if again:
            store.materialize_incremental(end_date=end, feature_views=again)
        return [
            (view.name, before[view.name] or (end - (view.ttl or timedelta(0))), end)
            for view in views
        ]

    def historical(self, entity_df: pd.DataFrame, service: str) -> pd.DataFrame:
        """The point-in-time-correct training set for `entity_df` (join keys,
        `event_timestamp`, labels) with the service's features: one row per input row."""
        self.offline_dir()
        store = self.store
        with self._offline_lock:
            frame = store.get_historical_features(
                entity_df=entity_df, features=store.get_feature_service(service)
            ).to_df()
        if len(frame) != len(entity_df):
            raise RuntimeError(
                f"the offline store returned {len(frame)} rows for {len(entity_df)} entity rows"
            )
        return frame


def redis_connection(connection: str, timeout_s: float) -> str:
    """A Redis online store's connection string (`host:port,param=value,...`) with
    `socket_connect_timeout` and `socket_timeout` unless it sets them: without them a
    Redis that stops answering blocks a read for as long as the kernel waits."""
    given = {part.split("=", 1)[0].strip() for part in connection.split(",") if "=" in part}
    missing = [
        f"{name}={timeout_s:g}"
        for name in ("socket_connect_timeout", "socket_timeout")
        if name not in given
    ]
    return ",".join([connection, *missing])


def _bound_redis_retries(store: Any) -> None:
    """Make Feast's Redis client retry a command once, at once, and only when its
    connection failed (a Redis restart closes pooled connections): redis-py's default, 3
    retries with up to 10 s of jittered backoff each, timeouts included, would hold a
    read of a stopped or hung Redis for many seconds. A connection string cannot carry a
    retry policy, hence the client's own setter."""
    config = store.config.online_store
    if getattr(config, "type", None) != "redis":
        return
    client = store._get_provider().online_store._get_client(config)
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.retry import Retry

    client.set_retry(Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)))


@contextlib.contextmanager
def _online_store_errors() -> Iterator[None]:
    """An online store that cannot be reached (refused, timed out) is 503
    `feature_store_unavailable`, as `/health` names it `feature_online_store`."""
    try:
        yield
    except _unreachable() as exc:
        log.warning("the online feature store is unreachable: %s", exc)
        raise Unavailable(
            ErrorCode.FEATURE_STORE_UNAVAILABLE,
            "The online feature store is unavailable; retry shortly.",
        ) from exc


def _unreachable() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    try:
        from redis import exceptions
    except ImportError:
        return errors
    return (*errors, exceptions.ConnectionError, exceptions.TimeoutError)


def _definitions(path: Path) -> list[Any]:
    spec = importlib.util.spec_from_file_location("ml_service_feature_repo", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the feature definitions {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.OBJECTS)


def _join_keys(entities: Mapping[str, Any], name: str) -> list[str]:
    entity = entities.get(name)
    return [entity.join_key] if entity is not None else [name]


def _value_type(entities: Mapping[str, Any], view: Any, key: str) -> str:
    """The proto field of a join key's values (int64_val, string_val, ...)."""
    for column in getattr(view, "entity_columns", []) or []:
        if column.name == key:
            return _PROTO_FIELDS.get(str(column.dtype), "string_val")
    for entity in entities.values():
        if entity.join_key == key:
            return _PROTO_FIELDS.get(entity.value_type.name, "string_val")
    return "string_val"


_PROTO_FIELDS = {
    "Int64": "int64_val",
    "INT64": "int64_val",
    "Int32": "int32_val",
    "INT32": "int32_val",
    "String": "string_val",
    "STRING": "string_val",
    "Float64": "double_val",
    "DOUBLE": "double_val",
    "Bool": "bool_val",
    "BOOL": "bool_val",
}


_PROBE_VALUES: dict[str, Any] = {
    "int64_val": 0,
    "int32_val": 0,
    "double_val": 0.0,
    "bool_val": False,
}


def _proto_value(value: Any, field: str, where: str) -> Any:
    from feast.protos.feast.types.Value_pb2 import Value

    expected = {"int64_val": int, "int32_val": int, "double_val": float, "bool_val": bool}
    kind = expected.get(field, str)
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        if not (kind is float and isinstance(value, int) and not isinstance(value, bool)):
            raise InvalidInput.for_field(
                where, f"expected {kind.__name__} (the entity's key type), got {value!r}"
            )
    return Value(**{field: value})


def _feature(field: Any) -> FeatureInfo:
    return FeatureInfo(field.name, str(field.dtype), field.description or "")


def _source(source: Any) -> str | None:
    if source is None:
        return None
    path = getattr(source, "path", None)
    return f"{type(source).__name__}: {path}" if path else f"{type(source).__name__}"


def _last_materialized(view: Any) -> datetime | None:
    intervals = view.materialization_intervals or []
    if not intervals:
        return None
    end: datetime = max(i[1] for i in intervals)
    return end if end.tzinfo else end.replace(tzinfo=UTC)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return value
