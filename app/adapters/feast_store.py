"""The feature store over Feast: the repository under `configs/feature_repo`, applied
idempotently; catalog, online features, materialization and point-in-time training sets.

Feast imports take seconds (it imports torch): this module is imported only where the
feature store is used, never by the unit tests.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from app.adapters.local_files import write_parquet
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
from app.errors import InvalidInput
from app.samples import feature_snapshots

log = logging.getLogger(__name__)

FEAST_DIR_ENV = "ML_FEAST_DIR"
STATS_FILE = "customer_stats.parquet"
VIEW_CACHE_S = 5.0  # how long feature view definitions are reused (as Feast's registry cache)
LABELS_FILE = "churn_labels.parquet"

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


class FeastFeatures:
    """One Feast feature store, as the service uses it.

    Args:
        repo_dir: the feature repository (`feature_store.yaml` and `features.py`).
        feast_dir: where the registry, online store and demo data live (`ML_FEAST_DIR`).
        config_file: the repository's config file name (`feature_store.yaml`, or the
            production one).
        clock: now, for freshness (tests inject one).
    """

    def __init__(
        self,
        repo_dir: Path,
        feast_dir: Path,
        config_file: str = "feature_store.yaml",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repo_dir = repo_dir
        self.feast_dir = feast_dir
        self.config_file = config_file
        self._clock = clock
        self._lock = threading.Lock()
        self._store: Any = None
        self._definitions: tuple[float, dict[str, Any], dict[str, Any]] | None = None

    def start(self, demo_data: bool = True) -> None:
        """Write the demo data (if asked and missing), then apply the repository's
        definitions: unchanged definitions change nothing, so every start may apply."""
        self.feast_dir.mkdir(parents=True, exist_ok=True)
        os.environ[FEAST_DIR_ENV] = str(self.feast_dir)  # features.py and the yaml read it
        if demo_data:
            write_demo_data(self.feast_dir)
        store = self.store
        objects = _definitions(self.repo_dir / "features.py")
        store.apply(objects)
        log.info("feature repository %s applied (%d objects)", self.repo_dir, len(objects))

    @property
    def store(self) -> Any:
        """Feast's FeatureStore on this repository."""
        with self._lock:
            if self._store is None:
                from feast import FeatureStore

                self._store = FeatureStore(repo_path=str(self.repo_dir), config=self._config())
            return self._store

    def _config(self) -> Any:
        """The repository's config with `${ML_FEAST_DIR}` as this store's directory (not
        the process's environment: a process may hold stores of several directories),
        other variables from the environment."""
        import yaml
        from feast.repo_config import RepoConfig

        text = (self.repo_dir / self.config_file).read_text()
        text = text.replace("${" + FEAST_DIR_ENV + "}", str(self.feast_dir))
        config = RepoConfig(**yaml.safe_load(os.path.expandvars(text)))
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
        if all(name in views for name in by_view):
            return self._read(views, entities, by_view, entity_rows, features)
        return self._sdk_online(entity_rows, features)

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
                config=store.config, table=view, entity_keys=entity_keys, requested_features=wanted
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

    def materialize(self, end: datetime | None = None) -> list[tuple[str, datetime, datetime]]:
        """Incremental materialization up to `end` (now): each view from where it last
        stopped (or its TTL back, the first time). Returns (view, start, end) per view."""
        end = end or self._clock()
        store = self.store
        before = {v.name: _last_materialized(v) for v in store.list_feature_views()}
        store.materialize_incremental(end_date=end)
        done = []
        for view in store.list_feature_views():
            start = before.get(view.name) or (end - (view.ttl or timedelta(0)))
            done.append((view.name, start, end))
        log.info("materialized %d feature view(s) up to %s", len(done), end.isoformat())
        return done

    def historical(self, entity_df: pd.DataFrame, service: str) -> pd.DataFrame:
        """The point-in-time-correct training set for `entity_df` (join keys,
        `event_timestamp`, labels) with the service's features: one row per input row."""
        store = self.store
        frame = store.get_historical_features(
            entity_df=entity_df, features=store.get_feature_service(service)
        ).to_df()
        if len(frame) != len(entity_df):
            raise RuntimeError(
                f"the offline store returned {len(frame)} rows for {len(entity_df)} entity rows"
            )
        return frame


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
