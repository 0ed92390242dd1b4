"""Wire models of experiments."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.api.schemas.common import to_datetime
from app.api.schemas.keys import TagKey
from app.core.tracking import CREATED_BY_TAG, RESERVED_TAG_PREFIX, Experiment, NewExperiment


class ExperimentBase(BaseModel):
    """Fields an experiment is created with."""

    name: str = Field(
        min_length=1,
        max_length=500,
        description="Unique name of the experiment.",
        examples=["churn-model"],
    )
    description: str | None = Field(
        default=None, max_length=20000, description="Free text shown in the MLflow UI."
    )
    tags: dict[TagKey, str] = Field(
        default_factory=dict,
        max_length=100,
        description="Free-form tags (keys: letters, digits, `_ - . : /`, spaces).",
        examples=[{"team": "growth"}],
    )


class ExperimentCreate(ExperimentBase):
    """Create an experiment."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "name": "churn-model",
                "description": "Churn MLP",
                "tags": {"team": "growth"},
            }
        },
    )

    @field_validator("name")
    @classmethod
    def _name_is_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        if value != value.strip():
            raise ValueError("must not start or end with whitespace")
        return value

    def to_domain(self, created_by: str) -> NewExperiment:
        """The domain request."""
        return NewExperiment(
            name=self.name, tags=self.tags, description=self.description, created_by=created_by
        )


class ExperimentLinks(BaseModel):
    """Where to look at the experiment."""

    self: str = Field(description="This experiment in the API.")
    runs: str = Field(description="Its runs in the API.")
    mlflow_ui: str = Field(description="The experiment in the MLflow UI.")


class ExperimentPublic(ExperimentBase):
    """An experiment."""

    id: str = Field(description="MLflow experiment id.", examples=["1"])
    artifact_location: str = Field(description="Where its runs' artifacts are stored.")
    lifecycle_stage: str = Field(description="`active` (deleted experiments are not listed).")
    created_by: str | None = Field(description="Token name that created it through the API.")
    created_at: datetime | None
    updated_at: datetime | None
    links: ExperimentLinks

    @classmethod
    def of(cls, experiment: Experiment, api_base: str, mlflow_prefix: str) -> ExperimentPublic:
        """Wire form of a domain experiment."""
        user_tags = {
            k: v
            for k, v in experiment.tags.items()
            if not k.startswith(("mlflow.", RESERVED_TAG_PREFIX))
        }
        path = f"{api_base}/experiments/{experiment.id}"
        return cls(
            id=experiment.id,
            name=experiment.name,
            description=experiment.description,
            tags=user_tags,
            artifact_location=experiment.artifact_location,
            lifecycle_stage=experiment.lifecycle_stage,
            created_by=experiment.tags.get(CREATED_BY_TAG),
            created_at=to_datetime(experiment.created_ms),
            updated_at=to_datetime(experiment.updated_ms),
            links=ExperimentLinks(
                self=path,
                runs=f"{path}/runs",
                mlflow_ui=f"{mlflow_prefix}/#/experiments/{experiment.id}",
            ),
        )
