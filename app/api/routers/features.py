"""`/features`: the feature catalog, online features, materialization."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Body, Response
from fastapi.responses import JSONResponse

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
INLINE_ROWS = 10  # lookups up to this many rows run on the event loop


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
async def serve(body: Annotated[ServeRequest, Body()], features: FeatureStoreDep) -> Response:
    """Online features for entity rows, by `features` or `feature_service`."""
    # The hot path: an online read is a fraction of a millisecond for a few rows, less
    # than a thread hop; a big request goes to a thread. Plain JSON out, not re-validated.
    if len(body.entities) <= INLINE_ROWS:
        online = features.serve(body.entities, body.features, body.feature_service)
    else:
        online = await asyncio.to_thread(
            features.serve, body.entities, body.features, body.feature_service
        )
    return JSONResponse(
        {
            "columns": list(online.columns),
            "rows": online.rows,
            "statuses": online.statuses,
        }
    )


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
