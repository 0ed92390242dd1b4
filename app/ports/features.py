"""The feature store (Feast)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from app.core.features import Catalog, OnlineFeatures


class FeatureStore(Protocol):
    """The feature store (Feast): catalog, online values, materialization."""

    def catalog(self) -> Catalog:
        """The repository as it stands, with freshness."""
        ...

    def online(
        self, entity_rows: Sequence[Mapping[str, Any]], features: Sequence[str]
    ) -> OnlineFeatures:
        """Online values of checked `view:feature` references for the rows."""
        ...

    def materialize(self, end: datetime | None = None) -> list[tuple[str, datetime, datetime]]:
        """Incremental materialization up to `end`; (view, start, end) per view."""
        ...
