"""Builds the FastAPI application of the ML Service from its use cases (`Services`) and
the API's settings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.api.deps import ApiContext
from app.api.problems import (
    PROBLEM_MEDIA_TYPE,
    body_limit_openapi,
    ingress_openapi,
    install_problem_handlers,
    malformed_openapi,
)
from app.api.request_context import RequestContextMiddleware
from app.api.routers import diagnostics, experiments, health, models, runs, serving, training
from app.api.routers import features as feature_routes
from app.api.routers import llm as llm_routes
from app.api.routers import monitoring as monitoring_routes
from app.api.routers import tokens as token_routes
from app.api.security import SECURITY_SCHEME
from app.api.workbench import mount_workbench
from app.core.access import Principal, TokenBook
from app.services.container import Services
from app.settings import ApiSettings, TokenEntry

API_VERSION = "1.0.0"

_DESCRIPTION = """\
The MLOps backend of the ML platform: experiments and runs over MLflow, and a model
registry with semantic versions, lineage, gated promotions and a verifiable audit log.

**Authentication.** Send `Authorization: Bearer <token>`. Reads need the `viewer` role,
writes `engineer`; `approver` approves promotions and `admin` manages tokens
(`/auth/tokens`). Tokens come from an admin (`POST /auth/tokens`, or `python -m app.tokens
create`), from the settings (`auth.tokens`, as hashes) or as JWTs of an OIDC issuer. On a
development start without configured tokens or issuer, the service writes an admin token
to `<data_dir>/admin.token` (revocable like any other).

**Errors.** Every error is `application/problem+json` (RFC 9457) with a stable `code`
and the `request_id` that is also in the `x-request-id` header.

**Pagination.** Listings return `next_page_token`; pass it back as `page_token` with the
same query. **Retries.** Creation endpoints accept an `Idempotency-Key` header.

**MLflow.** The MLflow tracking server and UI are served at `/mlflow` (same tokens:
`MLFLOW_TRACKING_TOKEN=<token>` for the Python client).
"""


_TAGS: list[dict[str, Any]] = [
    {"name": "experiments", "description": "Experiments in the MLflow tracking store."},
    {"name": "runs", "description": "Runs: log, search, compare."},
    {
        "name": "models",
        "description": "The registry: versions, semantic versions, lineage, gated "
        "lifecycle (development -> staging -> production -> archived), approvals and "
        "a hash-chained audit log.",
    },
    {
        "name": "serving",
        "description": "Deploy versions (replace, canary, A/B, shadow), predict with "
        "sticky assignment, feedback for A/B verdicts and canary quality.",
    },
    {
        "name": "training",
        "description": "Ray jobs: distributed training (Ray Train), tuning (Ray Tune), "
        "batch prediction (Ray Data); their state, progress, logs and MLflow runs.",
    },
    {
        "name": "features",
        "description": "The Feast feature store: catalog with freshness, online "
        "features, materialization.",
    },
    {
        "name": "monitoring",
        "description": "Prediction log, drift per feature and version against the "
        "training reference, alerts (webhooks signed with HMAC-SHA256), retraining "
        "triggers, the per-model live view and a drift report.",
    },
    {
        "name": "diagnostics",
        "description": "What is wrong with a model and since when: findings from the "
        "service's own evidence, explained by an LLM the service serves.",
    },
    {
        "name": "auth",
        "description": "Who the caller is; tokens with a role, a name and an expiry, "
        "created, listed and revoked by admins (only their SHA-256 is stored).",
    },
    {"name": "health", "description": "Liveness and readiness."},
]


def create_api(
    services: Services,
    *,
    api: ApiSettings,
    tokens: Sequence[TokenEntry],
    mlflow_prefix: str = "/mlflow",
    echo_request_id: bool = True,
    jwt_verifier: Callable[[str], Principal] | None = None,
    workbench_dir: Path | None = None,
) -> FastAPI:
    """The API application.

    Args:
        services: the use cases (what is None answers 503).
        api: the API's settings (base path, pages, body limit).
        tokens: the known tokens (hashes) and their roles.
        mlflow_prefix: where the MLflow UI is served (links in responses).
        echo_request_id: add `x-request-id` to responses; False behind Serve's proxy,
            which adds it itself.
        jwt_verifier: also accept the JWTs it verifies (OIDC), besides the tokens.
        workbench_dir: the built workbench, served at /workbench/ (None: not served).
    """
    background = services.background

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for task in background:
            await task.start()
        yield
        for task in reversed(background):
            await task.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="ML Service",
        version=API_VERSION,
        description=_DESCRIPTION,
        openapi_tags=_TAGS,
    )
    app.state.services = services
    stored = services.tokens.principal_for if services.tokens is not None else None
    app.state.token_book = TokenBook.of(
        ((t.name, t.roles, t.sha256) for t in tokens), jwt_verifier, stored
    )
    app.state.context = ApiContext(
        api_base=api.base_path,
        mlflow_prefix=mlflow_prefix,
        default_page_size=api.default_page_size,
        max_page_size=api.max_page_size,
    )
    install_problem_handlers(app)
    # The predict route first: routes are matched in order, on every request.
    routers = (
        serving,
        llm_routes,
        experiments,
        runs,
        models,
        training,
        feature_routes,
        monitoring_routes,
        diagnostics,
        token_routes,
    )
    for module in (*routers, health):
        app.include_router(module.router, prefix=api.base_path)
    mount_workbench(app, workbench_dir)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=api.max_body_bytes,
        echo_request_id=echo_request_id,
    )
    app.openapi = lambda: _openapi(app, api.max_body_bytes)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI, max_body_bytes: int) -> dict[str, Any]:
    """FastAPI's document, with the bearer scheme and errors as problem+json."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    schema.setdefault("components", {})["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "A service token (HTTP Basic with the token as password also works).",
        }
    }
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                _as_problem(status, response)
            if "requestBody" in operation:  # any body can fail to parse as JSON, or be too big
                operation["responses"].setdefault("400", malformed_openapi())
                body_limit_openapi(operation["responses"], max_body_bytes)
            ingress_openapi(operation["responses"])
    app.openapi_schema = schema
    return schema


def _as_problem(status: str, response: dict[str, Any]) -> None:
    """Errors are served as problem+json: move FastAPI's schema there, from whatever media
    type the route answers with (JSON, or text for a log)."""
    content = response.get("content", {})
    if not status.isdigit() or int(status) < 400:
        return
    others = {m: body for m, body in content.items() if m != PROBLEM_MEDIA_TYPE}
    if not others:
        return
    if int(status) == 503 and PROBLEM_MEDIA_TYPE not in content:
        return  # the health report is plain JSON
    schema = next((body.get("schema") for body in others.values() if "schema" in body), None)
    for media_type in others:
        del content[media_type]
    content.setdefault(PROBLEM_MEDIA_TYPE, {}).setdefault("schema", schema)
