"""Domain errors: a closed code enum, grouped by category, picklable across Ray.

Only the API layer knows HTTP; it maps each category to a status in one table
(`app.api.problems`). Errors raised inside a deployment or an actor cross a Ray
handle, and Ray re-raises them as a subclass of the original class, so every
error here must survive pickling with its code and context intact.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Stable, documented error codes. Clients switch on these, never on messages."""

    VALIDATION_FAILED = "validation_failed"
    MALFORMED_REQUEST = "malformed_request"  # a body that is not JSON (UTF-8) at all
    INVALID_PAGE_TOKEN = "invalid_page_token"
    INVALID_FILTER = "invalid_filter"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    ROUTE_NOT_FOUND = "route_not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    EXPERIMENT_NOT_FOUND = "experiment_not_found"
    RUN_NOT_FOUND = "run_not_found"
    MODEL_NOT_FOUND = "model_not_found"
    MODEL_VERSION_NOT_FOUND = "model_version_not_found"
    MODEL_SOURCE_NOT_FOUND = "model_source_not_found"
    EXPERIMENT_ALREADY_EXISTS = "experiment_already_exists"
    DUPLICATE_VERSION = "duplicate_version"
    ILLEGAL_TRANSITION = "illegal_transition"
    GATES_FAILED = "gates_failed"
    NOT_DEPLOYED = "not_deployed"
    JOB_NOT_FOUND = "job_not_found"
    TOO_MANY_JOBS = "too_many_jobs"
    TOKEN_NOT_FOUND = "token_not_found"
    FEATURE_SERVICE_NOT_FOUND = "feature_service_not_found"
    FEATURE_CONTRACT_BROKEN = "feature_contract_broken"
    DRIFT_NOT_EVALUATED = "drift_not_evaluated"
    INSUFFICIENT_RESOURCES = "insufficient_resources"
    NOTHING_TO_COMPARE = "nothing_to_compare"
    ROLLOUT_IN_PROGRESS = "rollout_in_progress"
    STAGE_NOT_ALLOWED = "stage_not_allowed"
    PREDICTION_FAILED = "prediction_failed"
    MODEL_LOAD_FAILED = "model_load_failed"
    RUN_ALREADY_TERMINATED = "run_already_terminated"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    BACKEND_UNAVAILABLE = "backend_unavailable"
    # a store is out: each names its component (readiness lists the same ones)
    TRACKING_STORE_UNAVAILABLE = "tracking_store_unavailable"  # MLflow's database
    STATE_STORE_UNAVAILABLE = "state_store_unavailable"  # the service's database
    OBJECT_STORE_UNAVAILABLE = "object_store_unavailable"  # S3: artifacts and files
    FEATURE_STORE_UNAVAILABLE = "feature_store_unavailable"  # Feast's online store
    STORAGE_FULL = "storage_full"  # a disk the service writes to has no space left
    INTERNAL = "internal_error"


def first_line(error: object, limit: int = 300) -> str:
    """The first line of an error's message (its type when empty), for a client's detail
    or a log line; the whole message belongs in the service log."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:limit]


@dataclass(frozen=True)
class FieldError:
    """One failing input field: where it is, what is wrong, and a machine-readable kind."""

    field: str
    message: str
    location: str = "body"
    kind: str = "invalid"


class DomainError(Exception):
    """Base of every error the service raises on purpose.

    Args:
        code: the stable code clients switch on.
        message: a human sentence; safe to show to the caller.
        field_errors: the failing input fields, for input errors.
        **context: identifiers that explain the error (ids, names); shown to the caller.
    """

    category = "internal"

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        field_errors: tuple[FieldError, ...] = (),
        **context: Any,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field_errors = field_errors
        self.context: Mapping[str, Any] = dict(context)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.code, self.message, self.field_errors, self.context))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.value!r}, {self.message!r})"


def _rebuild(
    cls: type[DomainError],
    code: ErrorCode,
    message: str,
    field_errors: tuple[FieldError, ...],
    context: Mapping[str, Any],
) -> DomainError:
    return cls(code, message, field_errors=field_errors, **context)


class InvalidInput(DomainError):
    """The request is well-formed HTTP but its content is wrong."""

    category = "invalid_input"

    @classmethod
    def for_field(
        cls, field: str, message: str, *, location: str = "body", code: ErrorCode | None = None
    ) -> InvalidInput:
        """An input error about exactly one field."""
        return cls(
            code or ErrorCode.VALIDATION_FAILED,
            f"{field}: {message}",
            field_errors=(FieldError(field=field, message=message, location=location),),
        )


class Unauthenticated(DomainError):
    """No credentials, or credentials that match no known token."""

    category = "unauthenticated"


class Forbidden(DomainError):
    """Authenticated, but the caller's roles do not allow this action."""

    category = "forbidden"


class NotFound(DomainError):
    """The addressed resource does not exist."""

    category = "not_found"


class Conflict(DomainError):
    """The request contradicts the current state (duplicate, illegal transition)."""

    category = "conflict"


class PayloadTooLarge(DomainError):
    """The request body exceeds the configured limit."""

    category = "payload_too_large"


class TooManyRequests(DomainError):
    """The service is at a limit of work in progress; retry once some of it is done."""

    category = "too_many_requests"


class UpstreamFailed(DomainError):
    """A model (or another engine behind the service) failed while answering."""

    category = "upstream"


class Unavailable(DomainError):
    """A backend the service depends on cannot be reached right now; retrying may help."""

    category = "unavailable"


_DISK_FULL_TEXTS = ("no space left on device", "database or disk is full", "disk quota exceeded")


def chain(error: BaseException) -> Iterator[BaseException]:
    """`error`, then each error it was raised from or during (each once)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_disk_full(error: BaseException) -> bool:
    """Whether `error`, or one it was raised from or during, says a disk is full (ENOSPC,
    EDQUOT, SQLite's "database or disk is full", as any library words it)."""
    return any(
        (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT))
        or any(text in str(e).lower() for text in _DISK_FULL_TEXTS)
        for e in chain(error)
    )


def storage_full() -> Unavailable:
    """The answer to a write that found its disk full: nothing was written."""
    return Unavailable(
        ErrorCode.STORAGE_FULL,
        "A disk the service writes to is full, so nothing was written; free space on it "
        "(the data directory), then retry.",
    )
