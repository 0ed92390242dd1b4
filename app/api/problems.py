"""Errors as RFC 9457 `application/problem+json`: the only place that knows HTTP statuses.

Every body's text (`detail`, field messages, context values) goes through `redact`: an
adapter's error may quote a message that holds a connection URL with its password.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from app.api.schemas.common import FieldErrorOut, Problem
from app.errors import DomainError, ErrorCode, FieldError, is_disk_full, storage_full
from app.jobs.spec import JOB_KIND_TAGS
from app.settings import redact

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"

STATUS_BY_CATEGORY: Mapping[str, int] = {
    "invalid_input": 422,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "payload_too_large": 413,
    "too_many_requests": 429,
    "upstream": 502,
    "unavailable": 503,
    "internal": 500,
}

_STATUS_CODES: Mapping[int, ErrorCode] = {
    400: ErrorCode.MALFORMED_REQUEST,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.ROUTE_NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    422: ErrorCode.VALIDATION_FAILED,
    429: ErrorCode.TOO_MANY_JOBS,
    502: ErrorCode.PREDICTION_FAILED,
    503: ErrorCode.BACKEND_UNAVAILABLE,
}

_INTERNAL_DETAIL = "An internal error occurred; quote the request_id when reporting it."
_MALFORMED_DETAIL = "The body is not valid JSON (UTF-8, nested at most a few hundred levels)."


def status_of(error: DomainError) -> int:
    """The HTTP status of a domain error."""
    return STATUS_BY_CATEGORY[error.category]


def problem_body(
    *,
    code: ErrorCode,
    status: int,
    detail: str,
    instance: str,
    request_id: str,
    field_errors: Iterable[FieldError] = (),
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of a problem response, without secrets."""
    errors = [
        FieldErrorOut(field=e.field, location=e.location, message=redact(e.message), type=e.kind)
        for e in field_errors
    ]
    problem = Problem(
        type=f"urn:ml-service:problem:{code.value}",
        title=code.value.replace("_", " ").capitalize(),
        status=status,
        detail=redact(detail),
        instance=instance,
        code=code,
        request_id=request_id,
        errors=errors or None,
        context={key: _redacted(value) for key, value in context.items()} if context else None,
    )
    return problem.model_dump(mode="json", exclude_none=True)


def _redacted(value: Any) -> Any:
    """A context value with its text redacted, nested mappings and sequences too."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    return value


def problem_response(
    request: Request,
    *,
    code: ErrorCode,
    status: int,
    detail: str,
    field_errors: Iterable[FieldError] = (),
    context: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A problem response for `request`."""
    body = problem_body(
        code=code,
        status=status,
        detail=detail,
        instance=request.url.path,
        request_id=request_id_of(request),
        field_errors=field_errors,
        context=context,
    )
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def request_id_of(request: Request) -> str:
    """The id the request-context middleware gave this request."""
    return str(request.scope.get("state", {}).get("request_id", ""))


async def _on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    status = status_of(exc)
    headers = {"WWW-Authenticate": 'Bearer realm="ml-service"'} if status == 401 else None
    if status >= 500:
        log.warning("%s: %s", exc.code.value, exc.message)
    return problem_response(
        request,
        code=exc.code,
        status=status,
        detail=exc.message,
        field_errors=exc.field_errors,
        context=exc.context,
        headers=headers,
    )


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    broken = [e for e in exc.errors() if e.get("type") == "json_invalid"]
    if broken:  # not JSON at all: no field to name but the body
        where = broken[0].get("ctx", {}).get("error", "JSON decode error")
        position = broken[0].get("loc", ("body", "?"))[-1]
        return _malformed(request, f"The body is not valid JSON: {where} at position {position}.")
    field_errors = tuple(_field_error(e) for e in exc.errors())
    first = field_errors[0] if field_errors else FieldError("body", "invalid request")
    detail = f"{first.field}: {first.message}"
    if len(field_errors) > 1:
        detail += f" (and {len(field_errors) - 1} more)"
    return problem_response(
        request,
        code=ErrorCode.VALIDATION_FAILED,
        status=422,
        detail=detail,
        field_errors=field_errors,
    )


def _malformed(request: Request, detail: str) -> JSONResponse:
    return problem_response(
        request,
        code=ErrorCode.MALFORMED_REQUEST,
        status=400,
        detail=detail,
        field_errors=(FieldError("body", detail, location="body", kind="malformed"),),
    )


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:  # FastAPI could not parse the body (bytes, depth)
        return _malformed(request, _MALFORMED_DETAIL)
    code = _STATUS_CODES.get(exc.status_code, ErrorCode.INTERNAL)
    detail = exc.detail if isinstance(exc.detail, str) else code.value
    headers = exc.headers
    if exc.status_code == 404:
        detail = f"No route {request.method} {request.url.path}."
    if exc.status_code == 405:
        # Starlette names the methods of the first route on the path; every route counts
        allowed = ", ".join(_allowed_methods(request))
        headers = {**(headers or {}), "Allow": allowed}
        detail = f"{request.method} is not allowed on {request.url.path}; allowed: {allowed}."
    return problem_response(
        request, code=code, status=exc.status_code, detail=detail, headers=headers
    )


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this request's path."""
    path = request.url.path
    methods: set[str] = set()
    for context in iter_route_contexts(request.app.routes):
        if context.methods and context.path and compile_path(context.path)[0].fullmatch(path):
            methods |= set(context.methods)
    return sorted(methods)


def internal_error_body(instance: str, request_id: str) -> dict[str, Any]:
    """The body of a 500: generic on purpose, the trace goes to the log."""
    return problem_body(
        code=ErrorCode.INTERNAL,
        status=500,
        detail=_INTERNAL_DETAIL,
        instance=instance,
        request_id=request_id,
    )


async def _on_os_error(request: Request, exc: Exception) -> JSONResponse:
    """A full disk is 503 `storage_full` (nothing was written; free space and retry);
    any other OS error stays an internal error."""
    if not is_disk_full(exc):
        raise exc
    return await _on_domain_error(request, storage_full())


def install_problem_handlers(app: FastAPI) -> None:
    """Render every error the app can raise as problem+json."""
    app.add_exception_handler(DomainError, _on_domain_error)
    app.add_exception_handler(OSError, _on_os_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)


def _field_error(error: Mapping[str, Any]) -> FieldError:
    loc = [str(part) for part in error.get("loc", ())]
    location = loc[0] if loc and loc[0] in {"body", "query", "path", "header", "cookie"} else "body"
    parts = loc[1:] if loc and loc[0] == location else loc
    if location == "body" and parts and parts[0] in JOB_KIND_TAGS:
        parts = parts[1:]  # the branch of a tagged union, not a field the client sent
    field = ".".join(parts) or location
    return FieldError(
        field=field,
        message=str(error.get("msg", "invalid")),
        location=location,
        kind=str(error.get("type", "invalid")),
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the given error statuses, with examples."""
    return {status: _documented(status) for status in statuses}


_EXAMPLES: Mapping[int, tuple[ErrorCode, str]] = {
    400: (ErrorCode.MALFORMED_REQUEST, _MALFORMED_DETAIL),
    401: (ErrorCode.UNAUTHENTICATED, "This endpoint needs a bearer token (Authorization header)."),
    403: (ErrorCode.FORBIDDEN, "This action needs the 'engineer' role."),
    404: (ErrorCode.EXPERIMENT_NOT_FOUND, "No experiment with id '42'."),
    409: (ErrorCode.EXPERIMENT_ALREADY_EXISTS, "An experiment named 'churn' already exists."),
    413: (ErrorCode.PAYLOAD_TOO_LARGE, "The request body is over 16777216 bytes."),
    422: (ErrorCode.VALIDATION_FAILED, "name: String should have at least 1 character"),
    429: (ErrorCode.TOO_MANY_JOBS, "8 jobs are pending or running (the limit); retry later."),
    502: (ErrorCode.PREDICTION_FAILED, "The model failed on this input (see the service log)."),
    503: (
        ErrorCode.TRACKING_STORE_UNAVAILABLE,
        "The tracking store is unavailable; retry shortly.",
    ),
}
_DESCRIPTIONS: Mapping[int, str] = {
    400: "The body is not JSON at all (not UTF-8, cut short, nested too deeply): "
    "`malformed_request`.",
    401: "No bearer token, or an unknown one.",
    403: "The token's roles do not allow this.",
    404: "The resource does not exist.",
    409: "Conflicts with the current state.",
    413: "The body is too large.",
    422: "A field is invalid; `errors` lists every failing field.",
    429: "At a limit of work in progress (`too_many_jobs`); retry when some of it is done.",
    502: "The model failed while answering.",
    503: "A backend or store is unavailable; retry. The code names it: "
    "`backend_unavailable` (an engine or actor), `tracking_store_unavailable` (MLflow's "
    "database), `state_store_unavailable` (the service's database), "
    "`object_store_unavailable` (S3: artifacts and files), `feature_store_unavailable` "
    "(Feast's online store), `storage_full` (a disk the service writes to is full).",
}


def malformed_openapi() -> dict[str, Any]:
    """The OpenAPI response of a body that is not JSON (added to every operation with one)."""
    code, detail = _EXAMPLES[400]
    example = problem_body(
        code=code,
        status=400,
        detail=detail,
        instance="/api/v1/ml/experiments",
        request_id="5f0c6f3e-8a9e-4a43-9d55-2f0f3b8f6a11",
        field_errors=(FieldError("body", detail, location="body", kind="malformed"),),
    )
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        "description": _DESCRIPTIONS[400],
        "content": {PROBLEM_MEDIA_TYPE: {"schema": schema, "example": example}},
    }


INGRESS_400 = (
    " Also from the ingress (HAProxy): problem+json `malformed_request` for a URL with raw "
    "bytes above ASCII; its own HTML page for a request line and headers over 64 KiB, or "
    "not HTTP at all."
)


def body_limit_openapi(responses: dict[str, Any], max_body_bytes: int) -> None:
    """Document an operation's body limit: its 413 (added where missing) says the size."""
    limit = f" At most {max_body_bytes} bytes (`api.max_body_bytes`)."
    if "413" not in responses:
        detail = f"The request body is over {max_body_bytes} bytes."
        example = problem_body(
            code=ErrorCode.PAYLOAD_TOO_LARGE,
            status=413,
            detail=detail,
            instance="/api/v1/ml/experiments",
            request_id="5f0c6f3e-8a9e-4a43-9d55-2f0f3b8f6a11",
        )
        schema = {"$ref": "#/components/schemas/Problem"}
        responses["413"] = {
            "description": _DESCRIPTIONS[413],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": schema, "example": example}},
        }
    if limit not in responses["413"]["description"]:
        responses["413"]["description"] += limit


def ingress_openapi(responses: dict[str, Any]) -> None:
    """Add to an operation's responses the 400s the ingress answers before the API sees
    the request (every operation can get them)."""
    entry = responses.setdefault("400", malformed_openapi())
    if INGRESS_400 not in entry["description"]:
        entry["description"] += INGRESS_400
    entry["content"].setdefault("text/html", {"schema": {"type": "string"}})


def _documented(status: int) -> dict[str, Any]:
    code, detail = _EXAMPLES[status]
    example = problem_body(
        code=code,
        status=status,
        detail=detail,
        instance="/api/v1/ml/experiments/42",
        request_id="5f0c6f3e-8a9e-4a43-9d55-2f0f3b8f6a11",
        field_errors=(FieldError("name", detail.split(": ", 1)[-1]),) if status == 422 else (),
    )
    return {
        "model": Problem,
        "description": _DESCRIPTIONS[status],
        "content": {PROBLEM_MEDIA_TYPE: {"example": example}},
    }
