"""The job contract: what a training, tuning or batch-prediction job is asked to do.

The body of `POST /training/submit` and the YAML a user passes to
`ray job submit -- python -m app.jobs.train --config <yaml>`: the API takes it as its
request body, the use cases check it, the jobs run it. It depends on nothing of the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from app.core.search_space import Searcher
from app.settings import PlacementSettings, StorageSettings

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
ModelName = Annotated[
    str,
    Field(
        pattern=MODEL_NAME_PATTERN,
        description="Registered model name (letters, digits, _.-).",
        examples=["churn-classifier"],
    ),
]

BUILT_IN_TRAINERS = ("mlp_classifier", "mlp_regressor")
TrainerRef = Annotated[
    str,
    Field(
        pattern=r"^([A-Za-z_][A-Za-z0-9_]*)(\.[A-Za-z_][A-Za-z0-9_]*)*(:[A-Za-z_][A-Za-z0-9_]*)?$",
        description="`mlp_classifier`, `mlp_regressor`, or your own training function as "
        "`package.module:function` (installed on the cluster; see the README).",
        examples=["mlp_classifier"],
    ),
]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GeneratedData(_Spec):
    """A synthetic tabular dataset (customer churn) for demos and tests."""

    kind: Literal["churn"] = "churn"
    rows: int = Field(default=20_000, ge=100, le=10_000_000)
    seed: int = 0


class DatasetSpec(_Spec):
    """Where the training rows come from and which columns to use."""

    path: str | None = Field(
        default=None, description="Parquet file or directory (local path or s3://...)."
    )
    generate: GeneratedData | None = Field(
        default=None,
        description="Or generate a sample dataset (written to the run's "
        "artifacts, so its digest is recorded).",
    )
    target: str = Field(default="churned", min_length=1, description="The label column.")
    features: list[str] | None = Field(
        default=None, description="Feature columns; default: every other column."
    )
    validation_fraction: float = Field(default=0.2, gt=0, lt=0.9)
    feature_service: str | None = Field(
        default=None,
        description="Build the training set from this Feast feature service: point-in-time "
        "features for the rows of `entities` (recorded in the version's lineage).",
    )
    entities: str | None = Field(
        default=None,
        description="With feature_service: parquet of entity rows (join keys, "
        "`event_timestamp`, the target).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.feature_service is not None:
            if self.entities is None or self.path is not None or self.generate is not None:
                raise ValueError("with feature_service give entities (and no path or generate)")
        elif self.entities is not None:
            raise ValueError("entities needs feature_service")
        elif (self.path is None) == (self.generate is None):
            raise ValueError("give either path or generate")
        return self


class ScalingSpec(_Spec):
    """Ray Train workers and their resources."""

    num_workers: int = Field(default=2, ge=1, le=256)
    use_gpu: bool = False
    cpus_per_worker: float = Field(default=1.0, gt=0, le=64)
    gpus_per_worker: float = Field(default=1.0, gt=0, le=8, description="When use_gpu.")


class RegisterSpec(_Spec):
    """Register the trained model as a development version."""

    model: ModelName
    description: str = Field(default="", max_length=5000)


class SchedulerSpec(_Spec):
    """Trial scheduling: ASHA stops bad trials early; fifo runs every trial to the end."""

    kind: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(default=1, ge=1, description="Epochs before a trial can stop.")
    reduction_factor: float = Field(default=2.0, gt=1)


class TuneSpec(_Spec):
    """Hyperparameter search over the trainer's params."""

    searcher: Searcher = Searcher.RANDOM
    search_space: dict[str, Any] = Field(description="See `app/core/search_space.py`.")
    num_samples: int = Field(default=8, ge=1, le=1000, description="Trials (per grid point).")
    max_concurrent_trials: int = Field(default=2, ge=1, le=256)
    metric: str = Field(default="val_loss", min_length=1)
    mode: Literal["min", "max"] = "min"
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    seed: int = 0
    cpus_per_trial: float = Field(default=1.0, gt=0, le=64)


class TrainingSpec(_Spec):
    """A training job (or, with `tune`, a tuning job)."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "example": {
                "experiment": "churn-training",
                "trainer": "mlp_classifier",
                "dataset": {"generate": {"rows": 20000, "seed": 0}, "target": "churned"},
                "params": {"hidden": [64, 32], "lr": 0.01, "epochs": 5, "batch_size": 256},
                "scaling": {"num_workers": 2},
                "register": {"model": "churn"},
            }
        },
    )

    kind: Literal["train"] = "train"
    experiment: str = Field(min_length=1, max_length=500, description="MLflow experiment.")
    run_name: str | None = Field(default=None, max_length=250)
    trainer: TrainerRef = "mlp_classifier"
    dataset: DatasetSpec
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Trainer hyperparameters (built-in MLPs: hidden, lr, epochs, batch_size, "
        "weight_decay, seed).",
    )
    scaling: ScalingSpec = Field(default_factory=ScalingSpec)
    max_failures: int = Field(
        default=2,
        ge=0,
        le=20,
        description="Worker failures survived by resuming from the "
        "last checkpoint (0: fail with the reason).",
    )
    registration: RegisterSpec | None = Field(
        default=None,
        alias="register",
        description="Register the model as a development version (the best trial's, for tuning).",
    )
    tune: TuneSpec | None = None
    trigger: dict[str, str] | None = Field(
        default=None,
        description="What started the job when not a person (a monitoring alert: alert_id, "
        "reason); recorded in the registered version's lineage.",
    )

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainingSpec:
        """Read a job config file."""
        return cls.model_validate(yaml.safe_load(Path(path).read_text()))


class BatchPredictSpec(_Spec):
    """Batch inference with a registered version over parquet, as a Ray job."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "kind": "batch_predict",
                "model": "churn",
                "stage": "production",
                "input": "data/samples/score.parquet",
                "output": "data/predictions",
            }
        },
    )

    kind: Literal["batch_predict"]
    model: ModelName
    version: int | None = Field(default=None, ge=1)
    stage: Literal["staging", "production"] | None = Field(
        default=None, description="Or the version holding this stage (an MLflow alias)."
    )
    input: str = Field(min_length=1, description="Parquet file or directory.")
    output: str = Field(min_length=1, description="Directory the predictions are written to.")
    features: list[str] | None = None
    id_column: str | None = Field(
        default=None, description="A column copied through to identify rows."
    )
    batch_size: int = Field(default=4096, ge=1, le=1_000_000)
    concurrency: int = Field(
        default=2, ge=1, le=256, description="Model replicas at most (starts with one)."
    )
    cpus_per_replica: float = Field(
        default=0.5,
        gt=0,
        le=64,
        description="CPUs each model replica reserves (the default leaves room for the "
        "service and for reading and writing on a 2-core machine).",
    )

    @model_validator(mode="after")
    def _version_or_stage(self) -> Self:
        if (self.version is None) == (self.stage is None):
            raise ValueError("give either version or stage")
        return self


def _kind(value: Any) -> str:
    kind = value.get("kind", "train") if isinstance(value, dict) else getattr(value, "kind", "")
    return str(kind)


JOB_KIND_TAGS = frozenset({"train", "batch_predict"})
"""The branches of `JobSpec`: pydantic puts the branch into an error's location."""

JobSpec = Annotated[
    Annotated[TrainingSpec, Tag("train")] | Annotated[BatchPredictSpec, Tag("batch_predict")],
    Discriminator(_kind),
]


@dataclass(frozen=True)
class JobEnvironment:
    """Where a job finds the service's stores: the service hands it out (the registry actor
    answers `job_environment`), so a job submitted with `ray job submit` needs no paths."""

    tracking_uri: str
    artifact_root: str
    storage: StorageSettings
    placement: PlacementSettings
    feature_repo: str
    feature_dir: str
    feature_config: str
