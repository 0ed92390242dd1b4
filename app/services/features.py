"""Features as the API offers them: lookups checked against the catalog before the store
is asked, the catalog cached briefly (the online path reads it on every request)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from app.core.features import (
    Catalog,
    Freshness,
    OnlineFeatures,
    ValueStatus,
    plan_lookup,
    service_signature,
)
from app.errors import Conflict, ErrorCode, FieldError, InvalidInput, NotFound
from app.ports.features import FeatureStore
from app.ports.registry import ModelRegistry

log = logging.getLogger(__name__)


class Features:
    """The feature store behind the API.

    Args:
        store: the feature store port (Feast).
        catalog_ttl_s: how long a catalog read is reused.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        store: FeatureStore,
        catalog_ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = catalog_ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, Catalog] | None = None

    def catalog(self, fresh: bool = False) -> Catalog:
        """The catalog (re-read when older than the TTL, or when `fresh`)."""
        with self._lock:
            cached = self._cached
            if not fresh and cached is not None and self._clock() - cached[0] < self._ttl:
                return cached[1]
        catalog = self._store.catalog()
        with self._lock:
            self._cached = (self._clock(), catalog)
        return catalog

    def serve(
        self,
        entities: Sequence[Mapping[str, Any]],
        features: Sequence[str] | None,
        service: str | None,
    ) -> OnlineFeatures:
        """Online values for the rows.

        Raises:
            NotFound: no such feature service.
            InvalidInput: unknown features, rows without the join keys, unknown keys.
        """
        lookup = plan_lookup(self.catalog(), entities, features, service)
        if any(p.field == "feature_service" for p in lookup.problems):
            raise NotFound(
                ErrorCode.FEATURE_SERVICE_NOT_FOUND,
                f"No feature service {service!r}.",
                feature_service=service,
            )
        if lookup.problems:
            raise InvalidInput(
                ErrorCode.VALIDATION_FAILED,
                "; ".join(f"{p.field}: {p.message}" for p in lookup.problems[:5]),
                field_errors=tuple(FieldError(p.field, p.message) for p in lookup.problems),
            )
        return self._store.online(entities, lookup.features)

    def materialize(
        self, end: datetime | None
    ) -> tuple[list[tuple[str, datetime, datetime]], dict[str, Freshness | None]]:
        """Incremental materialization; the intervals and the freshness afterwards."""
        done = self._store.materialize(end)
        catalog = self.catalog(fresh=True)
        return done, {v.name: v.freshness for v in catalog.feature_views if not v.on_demand}

    def check_contract(self, service: str, signature: Sequence[Sequence[str]] | None) -> None:
        """A version trained on `service` may be deployed only while the service exists
        with the schema it was trained on.

        Raises:
            Conflict: the service is gone, or its features or types changed.
        """
        current = service_signature(self.catalog(fresh=True), service)
        if current is None:
            raise Conflict(
                ErrorCode.FEATURE_CONTRACT_BROKEN,
                f"The feature service {service!r} the version was trained on no longer exists.",
                feature_service=service,
            )
        if signature is not None and [tuple(s) for s in signature] != list(current):
            raise Conflict(
                ErrorCode.FEATURE_CONTRACT_BROKEN,
                f"The feature service {service!r} changed since the version was trained: "
                f"trained on {[list(s) for s in signature]}, now {[list(s) for s in current]}.",
                feature_service=service,
            )


class FeatureInputs:
    """Model inputs from entity keys: the online features of the feature service the
    version was trained on, named as the model's columns.

    Args:
        features: the feature store.
        registry: where a version's lineage names its feature service (read once per
            version: lineage never changes).
    """

    def __init__(self, features: Features, registry: ModelRegistry) -> None:
        self._features = features
        self._registry = registry
        self._services: dict[tuple[str, int], str | None] = {}

    async def __call__(
        self, model: str, version: int, entities: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """One record per entity row.

        Raises:
            InvalidInput: the version has no feature service, a row lacks its keys, or the
                online store has no value for an entity.
        """
        service = await self._service(model, version)
        if service is None:
            raise InvalidInput.for_field(
                "entities",
                f"{model} version {version} was not trained on a feature service: send inputs",
            )
        online = await asyncio.to_thread(self._features.serve, entities, None, service)
        names = [c for c in online.columns if ":" in c]
        records = []
        for index, (row, statuses) in enumerate(zip(online.rows, online.statuses, strict=True)):
            missing = [n for n in names if statuses.get(n) is not ValueStatus.PRESENT]
            if missing:
                raise InvalidInput.for_field(
                    f"entities[{index}]",
                    f"no online value for {', '.join(missing)} "
                    f"({', '.join(str(statuses.get(n)) for n in missing)})",
                )
            records.append({n.partition(":")[2]: row[n] for n in names})
        return records

    async def _service(self, model: str, version: int) -> str | None:
        key = (model, version)
        if key not in self._services:
            view = await self._registry.get_model(model)
            found = next((v for v in view.versions if v.version == version), None)
            self._services[key] = found.lineage.feature_service if found else None
        return self._services[key]
