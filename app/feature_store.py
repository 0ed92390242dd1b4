"""Features as the API offers them: lookups checked against the catalog before the store
is asked, the catalog cached briefly (the online path reads it on every request)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from app.core.features import Catalog, Freshness, OnlineFeatures, plan_lookup
from app.errors import ErrorCode, FieldError, InvalidInput, NotFound
from app.ports import FeatureStore

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
