"""`/features`: the feature catalog, online features, materialization."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from app.api.deps import FeatureStoreDep
from app.api.problems import problem_responses
from app.api.schemas.features import (
    CatalogOut,
    MaterializedView,
    MaterializeRequest,
    MaterializeResponse,
    ServeRequest,
    ServeResponse,
)
from app.api.security import GuardedRoute, requires
from app.core.access import Role

router = APIRouter(prefix="/features", tags=["features"], route_class=GuardedRoute)


@router.get("", response_model=CatalogOut, responses=problem_responses(422, 503))
def catalog(features: FeatureStoreDep) -> CatalogOut:
    """Entities, feature views (features, types, TTL, source, last materialization,
    freshness), on-demand views and feature services."""
    return CatalogOut.of(features.catalog(fresh=True))


@router.post(
    "/serve",
    response_model=ServeResponse,
    responses=problem_responses(404, 422, 503),
    openapi_extra=requires(Role.VIEWER),
)
def serve(body: Annotated[ServeRequest, Body()], features: FeatureStoreDep) -> ServeResponse:
    """Online features for entity rows, by `features` or `feature_service`."""
    return ServeResponse.of(features.serve(body.entities, body.features, body.feature_service))


@router.post(
    "/materialize",
    response_model=MaterializeResponse,
    responses=problem_responses(422, 503),
)
def materialize(
    features: FeatureStoreDep, body: Annotated[MaterializeRequest | None, Body()] = None
) -> MaterializeResponse:
    """Incremental materialization into the online store (engineer role)."""
    done, freshness = features.materialize(body.end if body else None)
    return MaterializeResponse(
        views=[MaterializedView(name=n, start=s, end=e) for n, s, e in done],
        freshness=freshness,
    )
