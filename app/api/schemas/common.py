"""Wire models shared by every resource: problem details and pages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.errors import ErrorCode

T = TypeVar("T")


def _iso_8601(value: Any) -> Any:
    """Only an ISO 8601 date-time: a number (or a numeric string) would be taken as seconds
    since 1970 and silently mean something else."""
    if isinstance(value, bool | int | float) or (
        isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit()
    ):
        raise ValueError("give an ISO 8601 date-time, e.g. 2026-12-01T09:00:00Z")
    return value


Timestamp = Annotated[datetime, BeforeValidator(_iso_8601)]
"""A date-time the client sends: ISO 8601 only (no time zone: UTC)."""


class FieldErrorOut(BaseModel):
    """One failing input field."""

    field: str = Field(description="Dotted path of the field, e.g. `metrics.0.value`.")
    location: str = Field(description="`body`, `query`, `path` or `header`.")
    message: str = Field(description="What is wrong with it.")
    type: str = Field(description="Machine-readable kind of failure.")


class Problem(BaseModel):
    """An RFC 9457 problem detail (`application/problem+json`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "type": "urn:ml-service:problem:experiment_not_found",
                "title": "Experiment not found",
                "status": 404,
                "detail": "No experiment with id '42'.",
                "instance": "/api/v1/ml/experiments/42",
                "code": "experiment_not_found",
                "request_id": "5f0c6f3e-8a9e-4a43-9d55-2f0f3b8f6a11",
            }
        }
    )

    type: str = Field(description="URI identifying the problem type; one per `code`.")
    title: str = Field(description="Short summary of the problem type.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong in this occurrence.")
    instance: str = Field(description="The request path that produced it.")
    code: ErrorCode = Field(description="Stable error code; switch on this, not on text.")
    request_id: str = Field(description="Also in the `x-request-id` header; quote it in reports.")
    errors: list[FieldErrorOut] | None = Field(
        default=None, description="For validation problems: every failing field."
    )
    context: dict[str, Any] | None = Field(
        default=None, description="Identifiers that explain the problem (ids, names)."
    )


class Page(BaseModel, Generic[T]):
    """One page of a listing. Pass `next_page_token` back as `page_token` for the next one;
    it is null on the last page. A page may hold fewer than `page_size` items."""

    items: list[T]
    next_page_token: str | None = None


def to_datetime(ms: int | None) -> datetime | None:
    """Epoch milliseconds (MLflow's clock) to an aware UTC datetime."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_ms(value: datetime) -> int:
    """An aware or naive (taken as UTC) datetime to epoch milliseconds."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)
