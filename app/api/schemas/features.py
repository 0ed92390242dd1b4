"""Wire schemas of `/features`: the catalog, online features, materialization."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.api.schemas.common import Timestamp
from app.core.features import Catalog, Freshness, OnlineFeatures, ValueStatus

EntityValue = int | float | str | bool


class FeatureOut(BaseModel):
    """One feature."""

    name: str
    dtype: str
    description: str


class FeatureViewOut(BaseModel):
    """A feature view with its freshness (on-demand views are computed per request)."""

    name: str
    on_demand: bool
    entities: list[str]
    join_keys: list[str]
    request_inputs: list[str] = Field(description="Values an on-demand view needs per row.")
    features: list[FeatureOut]
    ttl_seconds: float | None = Field(description="How long a value stays valid; null: forever.")
    source: str | None
    description: str
    tags: dict[str, str]
    last_materialized: datetime | None = Field(
        description="End of the newest materialized interval."
    )
    freshness: Freshness | None = Field(
        description="fresh (within the TTL), stale, never_materialized; null for on-demand."
    )


class EntityOut(BaseModel):
    """An entity."""

    name: str
    join_keys: list[str]
    value_type: str
    description: str


class FeatureServiceOut(BaseModel):
    """A feature service: the features a model trains on and is served with."""

    name: str
    features: list[str] = Field(description="`view:feature` references.")
    description: str


class CatalogOut(BaseModel):
    """The feature repository."""

    project: str
    entities: list[EntityOut]
    feature_views: list[FeatureViewOut]
    feature_services: list[FeatureServiceOut]

    @classmethod
    def of(cls, catalog: Catalog) -> CatalogOut:
        """Wire form."""
        return cls(
            project=catalog.project,
            entities=[
                EntityOut(
                    name=e.name,
                    join_keys=list(e.join_keys),
                    value_type=e.value_type,
                    description=e.description,
                )
                for e in catalog.entities
            ],
            feature_views=[
                FeatureViewOut(
                    name=v.name,
                    on_demand=v.on_demand,
                    entities=list(v.entities),
                    join_keys=list(v.join_keys),
                    request_inputs=list(v.request_inputs),
                    features=[
                        FeatureOut(name=f.name, dtype=f.dtype, description=f.description)
                        for f in v.features
                    ],
                    ttl_seconds=v.ttl.total_seconds() if v.ttl else None,
                    source=v.source,
                    description=v.description,
                    tags=dict(v.tags),
                    last_materialized=v.last_materialized,
                    freshness=v.freshness,
                )
                for v in catalog.feature_views
            ],
            feature_services=[
                FeatureServiceOut(name=s.name, features=list(s.features), description=s.description)
                for s in catalog.feature_services
            ],
        )


class ServeRequest(BaseModel):
    """Online features for entity rows, by feature list or feature service."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {"feature_service": "churn_v1", "entities": [{"customer_id": 7}]}
        },
    )

    entities: list[dict[str, EntityValue]] = Field(
        min_length=1,
        max_length=1000,
        description="One row per entity: its join keys (and request inputs of on-demand views).",
    )
    features: list[str] | None = Field(
        default=None, min_length=1, max_length=500, description="`view:feature` references."
    )
    feature_service: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _one_selector(self) -> Self:
        if (self.features is None) == (self.feature_service is None):
            raise ValueError("give either features or feature_service")
        return self


class ServeResponse(BaseModel):
    """Values in the order of the entity rows; a missing value is null, and its status
    says why (not_found: no row for the entity; outside_max_age: older than the TTL)."""

    columns: list[str]
    rows: list[dict[str, Any]]
    statuses: list[dict[str, ValueStatus]]

    @classmethod
    def of(cls, online: OnlineFeatures) -> ServeResponse:
        """Wire form."""
        return cls(
            columns=list(online.columns),
            rows=[dict(r) for r in online.rows],
            statuses=[dict(s) for s in online.statuses],
        )


class MaterializeRequest(BaseModel):
    """Incremental materialization into the online store."""

    model_config = ConfigDict(extra="forbid")

    end: Timestamp | None = Field(
        default=None, description="Up to this time (ISO 8601; no zone: UTC); default: now."
    )


class MaterializedView(BaseModel):
    """What was materialized for one view."""

    name: str
    start: datetime
    end: datetime


class MaterializeResponse(BaseModel):
    """The intervals materialized, and the catalog's freshness afterwards."""

    views: list[MaterializedView]
    freshness: dict[str, Freshness | None]
