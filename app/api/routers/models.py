"""`/models`: the registry: versions, semantic versions, lineage, gated promotion, audit."""

from __future__ import annotations

import asyncio
from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from app.api.deps import Context, CurrentPrincipal, PageParams, PromotionsDep, Registry, Signatures
from app.api.idempotency import answer_creation
from app.api.problems import problem_responses
from app.api.schemas.common import Page, Timestamp
from app.api.schemas.models import (
    SEMVER_RULE,
    ApprovalCreate,
    ApprovalPublic,
    AuditEventOut,
    AuditPublic,
    ChainOut,
    ModelDetail,
    ModelPublic,
    ModelVersionCreate,
    ModelVersionHistory,
    ModelVersionPublic,
    PromoteRequest,
    PromotionPublic,
)
from app.api.schemas.policy import PromotionPolicyBody
from app.api.schemas.signature import SignaturePublic
from app.api.security import GuardedRoute, requires
from app.core.access import Role
from app.core.audit import stages_as_of, verify
from app.core.paging import query_fingerprint, seal, unseal
from app.errors import ErrorCode, NotFound
from app.jobs.spec import MODEL_NAME_PATTERN

router = APIRouter(prefix="/models", tags=["models"], route_class=GuardedRoute)

ModelId = Annotated[
    str,
    Path(
        pattern=MODEL_NAME_PATTERN,
        description="Registered model name.",
        examples=["churn-classifier"],
    ),
]
VersionNumber = Annotated[int, Path(ge=1, description="MLflow version number.")]

_GATES_409: dict[int | str, dict[str, Any]] = {
    409: {
        "description": (
            "`gates_failed`: a gate refused (context.checks holds every check, its inputs and "
            "reason; only the refusal is recorded). `illegal_transition`: not the version's "
            "next stage, which is also what the losers of concurrent promotions get."
        ),
        **problem_responses(409)[409],
    }
}


_APPROVAL_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The same approver already approved this artifact.",
        "model": ApprovalPublic,
    },
    **problem_responses(404, 422, 503),
}


@router.post(
    "",
    status_code=201,
    response_model=ModelVersionPublic,
    description=SEMVER_RULE,
    responses=problem_responses(409, 422, 503),
)
async def register_version(
    body: ModelVersionCreate,
    registry: Registry,
    principal: CurrentPrincipal,
    context: Context,
    response: Response,
) -> ModelVersionPublic:
    """Register a model version from a run's logged model."""
    version = await registry.register(body.to_domain(), principal.name)
    answer_creation(
        response, f"{context.api_base}/models/{version.model}/versions/{version.version}", True
    )
    return ModelVersionPublic.of(version, context.mlflow_prefix)


@router.get("", response_model=Page[ModelPublic], responses=problem_responses(422, 503))
async def list_models(
    registry: Registry,
    context: Context,
    page: PageParams,
    name: Annotated[str | None, Query(max_length=128, description="Name substring.")] = None,
) -> Page[ModelPublic]:
    """List registered models with the versions in each stage."""
    fingerprint = query_fingerprint(["models", name or ""])
    after = unseal(page.token, fingerprint) or ""
    views = [
        v
        for v in await registry.list_models()
        if (name or "").lower() in v.model.name.lower() and v.model.name > after
    ]
    chunk = views[: page.size]
    more = len(views) > page.size
    return Page[ModelPublic](
        items=[ModelPublic.of(v, context.mlflow_prefix) for v in chunk],
        next_page_token=seal(chunk[-1].model.name, fingerprint) if more else None,
    )


@router.get("/{model_id}", response_model=ModelDetail, responses=problem_responses(404, 422, 503))
async def get_model(model_id: ModelId, registry: Registry, context: Context) -> ModelDetail:
    """Read a model with every version, approval and its effective policy."""
    return ModelDetail.detail(await registry.get_model(model_id), context.mlflow_prefix)


@router.get(
    "/{model_id}/versions",
    response_model=Page[ModelVersionHistory],
    responses=problem_responses(404, 422, 503),
)
async def list_versions(
    model_id: ModelId, registry: Registry, context: Context, page: PageParams
) -> Page[ModelVersionHistory]:
    """Version history: stage, semantic version, run, metrics, lineage, gates, who did what."""
    view = await registry.get_model(model_id)
    events = await registry.audit(model_id)
    fingerprint = query_fingerprint(["versions", model_id])
    after = int(unseal(page.token, fingerprint) or 0)
    versions = [v for v in view.versions if v.version > after]
    chunk = versions[: page.size]
    return Page[ModelVersionHistory](
        items=[ModelVersionHistory.with_history(v, events, context.mlflow_prefix) for v in chunk],
        next_page_token=seal(str(chunk[-1].version), fingerprint)
        if len(versions) > page.size
        else None,
    )


@router.get(
    "/{model_id}/versions/{version}",
    response_model=ModelVersionHistory,
    responses=problem_responses(404, 422, 503),
)
async def get_version(
    model_id: ModelId, version: VersionNumber, registry: Registry, context: Context
) -> ModelVersionHistory:
    """One version with its lineage, gate results and history."""
    view = await registry.get_model(model_id)
    found = next((v for v in view.versions if v.version == version), None)
    if found is None:
        raise NotFound(
            ErrorCode.MODEL_VERSION_NOT_FOUND,
            f"Model {model_id!r} has no version {version}.",
            model=model_id,
            version=version,
        )
    events = await registry.audit(model_id)
    return ModelVersionHistory.with_history(found, events, context.mlflow_prefix)


@router.get(
    "/{model_id}/versions/{version}/signature",
    response_model=SignaturePublic,
    responses=problem_responses(404, 422, 503),
)
async def get_signature(
    model_id: ModelId, version: VersionNumber, registry: Registry, signatures: Signatures
) -> SignaturePublic:
    """The version's input signature and example: what `/predict` accepts."""
    view = await registry.get_model(model_id)
    if all(v.version != version for v in view.versions):
        raise NotFound(
            ErrorCode.MODEL_VERSION_NOT_FOUND,
            f"Model {model_id!r} has no version {version}.",
            model=model_id,
            version=version,
        )
    found = await asyncio.to_thread(signatures.signature, model_id, version)
    if found is None:
        raise NotFound(
            ErrorCode.MODEL_VERSION_NOT_FOUND,
            f"Version {version} of {model_id!r} was logged without a signature.",
            model=model_id,
            version=version,
        )
    return SignaturePublic.of(model_id, version, found)


@router.post(
    "/{model_id}/promote",
    response_model=PromotionPublic,
    responses={**problem_responses(404, 422, 503), **_GATES_409},
)
async def promote(
    model_id: ModelId,
    body: PromoteRequest,
    promotions: PromotionsDep,
    principal: CurrentPrincipal,
    context: Context,
) -> PromotionPublic:
    """Promote a version to its next stage through the gates of that edge."""
    result = await promotions.promote(model_id, body.version, body.to, principal.name)
    return PromotionPublic.of(result, context.mlflow_prefix)


@router.post(
    "/{model_id}/approvals",
    status_code=201,
    response_model=ApprovalPublic,
    responses={
        200: {
            "description": "The same approver already approved this artifact.",
            "model": ApprovalPublic,
        },
        **problem_responses(404, 422, 503),
    },
    openapi_extra=requires(Role.APPROVER),
)
async def approve(
    model_id: ModelId,
    body: ApprovalCreate,
    registry: Registry,
    principal: CurrentPrincipal,
    context: Context,
    response: Response,
) -> ApprovalPublic:
    """Approve a version for production; the approval is bound to its artifact digest."""
    approval, created = await registry.approve(model_id, body.version, principal.name, body.comment)
    answer_creation(response, f"{context.api_base}/models/{model_id}/approvals", created)
    return ApprovalPublic.of(model_id, approval)


@router.get(
    "/{model_id}/approvals",
    response_model=list[ApprovalPublic],
    responses=problem_responses(404, 422, 503),
)
async def list_approvals(model_id: ModelId, registry: Registry) -> list[ApprovalPublic]:
    """Every approval of the model's versions."""
    view = await registry.get_model(model_id)
    return [ApprovalPublic.of(model_id, a) for a in view.approvals]


@router.get(
    "/{model_id}/audit", response_model=AuditPublic, responses=problem_responses(404, 422, 503)
)
async def audit(
    model_id: ModelId,
    registry: Registry,
    as_of: Annotated[
        Timestamp | None,
        Query(description="Also answer which versions held each stage at this time."),
    ] = None,
) -> AuditPublic:
    """The model's hash-chained audit log, verified; with `as_of`, the stages at that time."""
    events = await registry.audit(model_id)
    when = None if as_of is None else (as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC))
    return AuditPublic(
        model=model_id,
        verification=ChainOut.of(verify(events)),
        as_of=when,
        stages_as_of=None if when is None else stages_as_of(events, when),
        events=[AuditEventOut.of(e) for e in events],
    )


@router.put(
    "/{model_id}/policy",
    response_model=ModelPublic,
    responses=problem_responses(404, 422, 503),
    openapi_extra=requires(Role.APPROVER),
)
async def set_policy(
    model_id: ModelId,
    body: PromotionPolicyBody,
    registry: Registry,
    principal: CurrentPrincipal,
    context: Context,
) -> ModelPublic:
    """Set the model's promotion policy (thresholds, waivers, approvals); audited."""
    view = await registry.set_policy(model_id, body.to_domain(), principal.name)
    return ModelPublic.of(view, context.mlflow_prefix)


@router.delete(
    "/{model_id}/policy",
    response_model=ModelPublic,
    responses=problem_responses(404, 422, 503),
    openapi_extra=requires(Role.APPROVER),
)
async def clear_policy(
    model_id: ModelId, registry: Registry, principal: CurrentPrincipal, context: Context
) -> ModelPublic:
    """Drop the model's own policy: the configured one applies again; audited."""
    view = await registry.set_policy(model_id, None, principal.name)
    return ModelPublic.of(view, context.mlflow_prefix)
