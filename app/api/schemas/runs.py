"""Wire models of runs and metric history."""

from __future__ import annotations

import json
import time
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from app.api.schemas.common import to_datetime, to_ms
from app.api.schemas.keys import EntityKey, TagKey
from app.core.tracking import (
    CREATED_BY_TAG,
    RESERVED_TAG_PREFIX,
    DatasetRef,
    MetricPoint,
    Run,
    RunRecord,
    RunStatus,
    RunUpdate,
)

MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_METRIC_POINTS = 50_000


def _as_param_text(value: Any) -> Any:
    """Numbers and booleans are stored as text, as MLflow's client does (`str(value)`)."""
    return str(value) if isinstance(value, bool | int | float) else value


def _param_fits(value: str) -> str:
    if len(value) > MAX_PARAM_VALUE_LENGTH:
        raise ValueError(f"must be at most {MAX_PARAM_VALUE_LENGTH} characters")
    return value


ParamValue = Annotated[
    str,
    BeforeValidator(_as_param_text),
    AfterValidator(_param_fits),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": MAX_PARAM_VALUE_LENGTH},
                {"type": "number"},
                {"type": "boolean"},
            ],
            "description": "Stored as text, as MLflow does; at most 6000 characters.",
        }
    ),
]


def _after_epoch(value: datetime) -> datetime:
    if to_ms(value) < 0:
        raise ValueError("must not be before 1970-01-01 (epoch milliseconds are stored)")
    return value


EpochTime = Annotated[datetime, AfterValidator(_after_epoch)]


class LoggedStatus(StrEnum):
    """Statuses a run can be logged with."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class MetricIn(BaseModel):
    """One metric value at a step."""

    model_config = ConfigDict(extra="forbid")

    key: EntityKey
    value: float = Field(allow_inf_nan=False, description="A finite number.")
    step: int = Field(default=0, ge=-(2**63), lt=2**63, description="Training step or epoch.")
    timestamp: EpochTime | None = Field(
        default=None,
        description="When it was measured (ISO 8601, or epoch seconds/milliseconds); default now.",
    )


class DatasetIn(BaseModel):
    """A dataset the run consumed, recorded for lineage."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=500, examples=["churn-train"])
    digest: str = Field(
        min_length=1, max_length=36, description="Content digest.", examples=["7c1d9a2e"]
    )
    source_type: str = Field(
        default="local", min_length=1, max_length=36, description="e.g. local, s3, feast."
    )
    source: str = Field(
        min_length=1, max_length=65535, description="Where it came from (URI or JSON)."
    )
    schema_: dict[str, Any] | str | None = Field(
        default=None, alias="schema", description="Its schema (JSON object or text)."
    )
    profile: dict[str, Any] | str | None = Field(default=None, description="Row counts etc.")
    context: str | None = Field(
        default=None,
        max_length=500,
        description="training, validation, test ...",
        examples=["training"],
    )

    def to_domain(self) -> DatasetRef:
        """The domain value (schema and profile as JSON text, as MLflow stores them)."""
        return DatasetRef(
            name=self.name,
            digest=self.digest,
            source_type=self.source_type,
            source=self.source,
            schema=_as_text(self.schema_),
            profile=_as_text(self.profile),
            context=self.context,
        )


def _expand_shorthand(value: Any) -> Any:
    """`{"accuracy": 0.9}` is `[{"key": "accuracy", "value": 0.9}]`: one shape to validate,
    so errors name `metrics.<index>.<field>`."""
    if isinstance(value, dict):
        return [{"key": key, "value": item} for key, item in value.items()]
    return value


def _document_shorthand(schema: dict[str, Any]) -> None:
    """Tell OpenAPI the truth: a list of metric values, or the `{key: value}` shorthand."""
    listed = {k: schema.pop(k) for k in ("type", "items", "maxItems") if k in schema}
    shorthand = {"type": "object", "additionalProperties": {"type": "number"}}
    schema["anyOf"] = [listed, shorthand]


class _RunData(BaseModel):
    """Params, metrics and tags, shared by creation and update."""

    model_config = ConfigDict(extra="forbid")

    params: dict[EntityKey, ParamValue] = Field(
        default_factory=dict, max_length=1000, examples=[{"lr": 0.01, "hidden": 64}]
    )
    metrics: Annotated[list[MetricIn], BeforeValidator(_expand_shorthand)] = Field(
        default_factory=list,
        max_length=MAX_METRIC_POINTS,
        description=(
            "Metric values with steps and timestamps, or a `{key: value}` shorthand (step 0, now)."
        ),
        examples=[[{"key": "accuracy", "value": 0.91, "step": 10}]],
        json_schema_extra=_document_shorthand,
    )
    tags: dict[TagKey, Annotated[str, Field(max_length=MAX_TAG_VALUE_LENGTH)]] = Field(
        default_factory=dict, max_length=1000
    )

    def metric_points(self, now_ms: int) -> tuple[MetricPoint, ...]:
        """Every metric value as a domain point (missing timestamps are `now_ms`)."""
        return tuple(
            MetricPoint(m.key, m.value, m.step, to_ms(m.timestamp) if m.timestamp else now_ms)
            for m in self.metrics
        )


class RunCreate(_RunData):
    """Log a run: finished (the default) or ongoing (`RUNNING`, to be completed by PATCH)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "name": "mlp-baseline",
                "status": "FINISHED",
                "params": {"lr": 0.01, "hidden": 64},
                "metrics": [
                    {"key": "loss", "value": 0.52, "step": 1},
                    {"key": "loss", "value": 0.31, "step": 2},
                    {"key": "accuracy", "value": 0.91, "step": 2},
                ],
                "tags": {"mlflow.source.git.commit": "3f2a1bc"},
                "datasets": [
                    {
                        "name": "churn-train",
                        "digest": "7c1d9a2e",
                        "source": "data/churn/train.parquet",
                        "context": "training",
                    }
                ],
            }
        },
    )

    name: str | None = Field(default=None, min_length=1, max_length=250, examples=["mlp-baseline"])
    status: LoggedStatus = Field(default=LoggedStatus.FINISHED)
    start_time: EpochTime | None = Field(default=None, description="Default: now.")
    end_time: EpochTime | None = Field(
        default=None, description="Default: now for an ended run; must be empty while RUNNING."
    )
    datasets: list[DatasetIn] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _times_are_consistent(self) -> Self:
        if self.status is LoggedStatus.RUNNING and self.end_time is not None:
            raise ValueError("end_time must be empty while status is RUNNING")
        if self.start_time and self.end_time and to_ms(self.end_time) < to_ms(self.start_time):
            raise ValueError("end_time is before start_time")
        return self

    def to_domain(self, created_by: str) -> RunRecord:
        """The domain record."""
        now = int(time.time() * 1000)
        return RunRecord(
            name=self.name,
            status=RunStatus(self.status.value),
            start_ms=to_ms(self.start_time) if self.start_time else now,
            end_ms=to_ms(self.end_time) if self.end_time else None,
            params=dict(self.params),
            metrics=self.metric_points(now),
            tags=self.tags,
            datasets=tuple(d.to_domain() for d in self.datasets),
            created_by=created_by,
        )


class RunPatch(_RunData):
    """Add data to an ongoing run, and optionally end it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {"metrics": [{"key": "loss", "value": 0.2, "step": 3}], "status": "FINISHED"}
        },
    )

    status: LoggedStatus | None = Field(default=None, description="Set to end the run.")
    end_time: EpochTime | None = Field(default=None, description="Default: now when ending.")

    def to_domain(self) -> RunUpdate:
        """The domain update."""
        now = int(time.time() * 1000)
        return RunUpdate(
            status=RunStatus(self.status.value) if self.status else None,
            end_ms=to_ms(self.end_time) if self.end_time else None,
            params=dict(self.params),
            metrics=self.metric_points(now),
            tags=self.tags,
        )


class MetricValue(BaseModel):
    """A metric's value at a step."""

    value: float
    step: int
    timestamp: datetime | None


class MetricHistory(BaseModel):
    """Every value of one metric of a run."""

    run_id: str
    key: str
    points: list[MetricValue]


class DatasetPublic(BaseModel):
    """A dataset the run consumed."""

    name: str
    digest: str
    source_type: str
    source: str
    schema_: str | None = Field(default=None, serialization_alias="schema")
    profile: str | None = None
    context: str | None = None


class RunLinks(BaseModel):
    """Where to look at the run."""

    self: str
    mlflow_ui: str


class RunPublic(BaseModel):
    """A run: status, times, params, latest metric values, tags and datasets."""

    id: str
    experiment_id: str
    name: str | None
    status: RunStatus
    start_time: datetime | None
    end_time: datetime | None
    params: dict[str, str]
    metrics: dict[str, MetricValue] = Field(description="Latest value of each metric.")
    tags: dict[str, str] = Field(description="Tags set by the caller.")
    system_tags: dict[str, str] = Field(description="Tags MLflow and the service maintain.")
    datasets: list[DatasetPublic]
    artifact_uri: str
    created_by: str | None
    links: RunLinks

    @classmethod
    def of(cls, run: Run, api_base: str, mlflow_prefix: str) -> RunPublic:
        """Wire form of a domain run."""
        system = ("mlflow.", RESERVED_TAG_PREFIX)
        exp_path = f"{api_base}/experiments/{run.experiment_id}"
        return cls(
            id=run.id,
            experiment_id=run.experiment_id,
            name=run.name,
            status=run.status,
            start_time=to_datetime(run.start_ms),
            end_time=to_datetime(run.end_ms),
            params=dict(run.params),
            metrics={k: _metric_value(p) for k, p in run.metrics.items()},
            tags={k: v for k, v in run.tags.items() if not k.startswith(system)},
            system_tags={k: v for k, v in run.tags.items() if k.startswith(system)},
            datasets=[DatasetPublic(**_dataset_fields(d)) for d in run.datasets],
            artifact_uri=run.artifact_uri,
            created_by=run.tags.get(CREATED_BY_TAG) or run.user,
            links=RunLinks(
                self=f"{exp_path}/runs/{run.id}",
                mlflow_ui=f"{mlflow_prefix}/#/experiments/{run.experiment_id}/runs/{run.id}",
            ),
        )


def _metric_value(point: MetricPoint) -> MetricValue:
    return MetricValue(
        value=point.value, step=point.step, timestamp=to_datetime(point.timestamp_ms or None)
    )


def _dataset_fields(d: DatasetRef) -> dict[str, Any]:
    return {
        "name": d.name,
        "digest": d.digest,
        "source_type": d.source_type,
        "source": d.source,
        "schema_": d.schema,
        "profile": d.profile,
        "context": d.context,
    }


def _as_text(value: dict[str, Any] | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)
