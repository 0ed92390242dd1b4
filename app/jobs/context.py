"""What a job on the service's cluster needs from the service: the MLflow store, the file
storage, the feature store and the registry, found through the registry actor (no paths
to configure: a job submitted with `ray job submit` finds them too)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Any

import mlflow
import ray
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag

from app.adapters.storage import ArrowStorage, open_storage
from app.adapters.torch_mlp import Servable
from app.core.drift import PREDICTION, REFERENCE_ARTIFACT, Reference, capture
from app.core.registry import Registration
from app.core.tracking import DATASET_CONTEXT_TAG, EVALUATION_TAG
from app.jobs.spec import JobEnvironment, TrainingSpec
from app.jobs.tabular import TabularData, schema_json
from app.settings import redact

log = logging.getLogger(__name__)

NAMESPACE = os.environ.get("ML_REGISTRY__NAMESPACE", "ml-service")
REGISTRY = os.environ.get("ML_REGISTRY__ACTOR_NAME", "ml-service-registry")
JOB_TAG = "mlservice.job_id"
KIND_TAG = "mlservice.kind"
TOTAL_TAG = "mlservice.total"
UNIT_TAG = "mlservice.unit"
VERSION_TAG = "mlservice.registered_version"
MODEL_TAG = "mlservice.registered_model"
FEATURE_SERVICE_TAG = "mlservice.feature_service"
CODE_TAG = "mlservice.code_version"
BUILT_IN_EVALUATION = {
    "mlp_classifier": {"val_loss": "minimize", "val_accuracy": "maximize"},
    "mlp_regressor": {"val_loss": "minimize", "val_rmse": "minimize", "val_mae": "minimize"},
}
PIP = [f"torch=={__import__('torch').__version__.split('+')[0]}"]


@dataclass
class JobContext:
    """The service as seen from a job."""

    job_id: str
    environment: JobEnvironment
    storage: ArrowStorage
    registry: Any

    @classmethod
    def discover(cls) -> JobContext:
        """Find the registry actor (by name: a job is a driver of its own, started by Ray's
        job API or the `ray job submit` command) and ask it where the stores are."""
        registry = ray.get_actor(REGISTRY, namespace=NAMESPACE)
        environment: Any = ray.get(registry.job_environment.remote())
        mlflow.set_tracking_uri(environment.tracking_uri)  # a job process serves one store
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        storage = open_storage(environment.storage)
        return cls(submission_id(), environment, storage, registry)

    @property
    def tracking_uri(self) -> str:
        """The MLflow store."""
        return self.environment.tracking_uri

    @property
    def artifact_root(self) -> str:
        """Where new MLflow experiments keep their artifacts."""
        return self.environment.artifact_root

    def feature_store(self) -> Any:
        """The service's Feast feature store (`FeastFeatures`), its offline data read from
        the storage through this node's cache."""
        from pathlib import Path

        from app.adapters.feast_store import FeastFeatures, OfflineFiles

        env = self.environment
        return FeastFeatures(
            Path(env.feature_repo),
            Path(env.feature_dir),
            env.feature_config,
            offline=OfflineFiles(self.storage, env.storage.cache_dir),
        )

    @property
    def client(self) -> MlflowClient:
        """MLflow's client on the service's store."""
        return MlflowClient(self.tracking_uri)

    def checkpoints(self, kind: str) -> tuple[Any, str]:
        """Where Ray Train and Tune keep results and checkpoints: the storage's
        `checkpoints/<kind>`, as a pyarrow filesystem and a path in it."""
        return self.storage.locate(f"checkpoints/{kind}")

    def start_run(self, spec: TrainingSpec, kind: str, total: int | None = None) -> str:
        """The job's MLflow run, tagged so the service can follow it."""
        client = self.client
        experiment = client.get_experiment_by_name(spec.experiment)
        experiment_id = (
            experiment.experiment_id
            if experiment
            else client.create_experiment(
                spec.experiment, artifact_location=f"{self.artifact_root}/{uuid.uuid4().hex}"
            )
        )
        epochs = int(spec.params.get("epochs", 5))
        tags = {
            JOB_TAG: self.job_id,
            KIND_TAG: kind,
            "mlservice.trainer": spec.trainer,
            TOTAL_TAG: str(total if total is not None else epochs),
            UNIT_TAG: "trials" if kind == "tune" else "epochs",
            CODE_TAG: code_version(),
            "mlflow.source.git.commit": code_version(),
        }
        if spec.dataset.feature_service:
            tags[FEATURE_SERVICE_TAG] = spec.dataset.feature_service
        run = client.create_run(experiment_id, run_name=spec.run_name or self.job_id, tags=tags)
        params = [Param(k, str(v)) for k, v in spec.params.items()]
        client.log_batch(run.info.run_id, params=params[:100], synchronous=True)
        log.info("job %s: MLflow run %s", self.job_id, run.info.run_id)
        return str(run.info.run_id)

    def set_total(self, run_id: str, total: int) -> None:
        """How many units (epochs, trials) the job will do."""
        self.client.set_tag(run_id, TOTAL_TAG, str(total))

    def log_dataset(self, run_id: str, data: TabularData) -> None:
        """Record the training data for lineage (name, digest, source, schema)."""
        dataset = Dataset(
            data.name,
            data.digest,
            "local" if "://" not in data.source else data.source.split("://")[0],
            json.dumps({"uri": data.source}),
            schema_json(data),
            json.dumps({"rows": data.rows}),
        )
        self.client.log_inputs(
            run_id, datasets=[DatasetInput(dataset, [InputTag(DATASET_CONTEXT_TAG, "training")])]
        )

    def log_model(
        self, run_id: str, network: Any, data: TabularData, *, classifier: bool, wrap: bool
    ) -> None:
        """Log the trained network as the run's MLflow model (raw features in)."""
        model = Servable(network, data.mean, data.std, classifier) if wrap else network
        model.eval()
        with mlflow.start_run(run_id=run_id):
            mlflow.pytorch.log_model(  # pickled: pt2 cannot trace a named-column example
                model,
                name="model",
                input_example=data.example,
                pip_requirements=PIP,
                serialization_format="pickle",
            )
            mlflow.log_dict(reference_of(model, data).to_dict(), REFERENCE_ARTIFACT)

    def log_baseline(self, run_id: str, data: TabularData, *, classifier: bool) -> None:
        """The constant predictor's score on the validation set, to compare with."""
        share = data.val_target_mean
        if classifier:
            metric = Metric("baseline_accuracy", max(share, 1 - share), now_ms(), 0)
        else:
            metric = Metric("baseline_rmse", data.val_target_std, now_ms(), 0)
        self.client.log_batch(run_id, metrics=[metric], synchronous=True)

    def finish(self, run_id: str, spec: TrainingSpec, provenance: dict[str, Any]) -> None:
        """Declare the run's evaluation metrics, register its model (when asked) and end
        the run."""
        declared = evaluation_metrics(spec.trainer)
        if declared:  # what the staging gate compares (else all but bookkeeping metrics)
            self.client.set_tag(run_id, EVALUATION_TAG, json.dumps(declared))
        if spec.trigger:  # e.g. the monitoring alert that asked for this model
            provenance = {**provenance, "trigger": dict(spec.trigger)}
            for key, value in spec.trigger.items():
                self.client.set_tag(run_id, f"mlservice.trigger.{key}", value)
        if spec.registration is not None:
            request = Registration(
                model=spec.registration.model,
                run_id=run_id,
                artifact_path="model",
                description=spec.registration.description,
                tags={"mlservice_job": self.job_id},
                provenance=provenance,
            )
            version = ray.get(self.registry.register.remote(request, f"job:{self.job_id}"))
            client = self.client
            client.set_tag(run_id, MODEL_TAG, version.model)
            client.set_tag(run_id, VERSION_TAG, str(version.version))
            log.info(
                "registered %s version %s (%s)", version.model, version.version, version.semver
            )
        self.client.set_terminated(run_id, "FINISHED")


def evaluation_metrics(trainer: str) -> dict[str, str]:
    """The metrics that say how good a trainer's model is, with their goals: the built-in
    MLPs' validation metrics, or a custom trainer's `EVALUATION_METRICS` (on the function
    or its module; see app/jobs/examples.py)."""
    if trainer in BUILT_IN_EVALUATION:
        return dict(BUILT_IN_EVALUATION[trainer])
    if ":" not in trainer:
        return {}
    import importlib

    module_name, _, function_name = trainer.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return {}
    function = getattr(module, function_name, None)
    declared = getattr(function, "EVALUATION_METRICS", None) or getattr(
        module, "EVALUATION_METRICS", None
    )
    return {str(k): str(v) for k, v in dict(declared or {}).items()}


def reference_of(model: Any, data: TabularData) -> Reference:
    """What monitoring compares live traffic with: the training features' distributions
    and the model's predictions on the validation set (the positive-class probability of a
    classifier, the value of a regressor)."""
    import torch

    train, val = data.train_sample, data.val_sample  # at most SAMPLE_ROWS rows of each
    columns: dict[str, Any] = {name: train[name].to_numpy() for name in data.features}
    with torch.no_grad():
        out = model(torch.from_numpy(val.to_numpy(dtype="float32"))).numpy()
    columns[PREDICTION] = out[:, -1] if out.ndim == 2 else out
    reference = capture(columns)
    log.info(
        "captured the drift reference: %d training rows, %d features",
        len(train),
        len(data.features),
    )
    return reference


def fail_run(context: JobContext, run_id: str, exc: BaseException) -> None:
    """Mark the run failed, with the reason."""
    try:
        client = context.client
        client.log_batch(
            run_id,
            tags=[RunTag("mlservice.error", redact(f"{type(exc).__name__}: {exc}")[:5000])],
            synchronous=True,
        )
        client.set_terminated(run_id, "FAILED")
    except Exception:
        log.exception("could not mark run %s failed", run_id)


def submission_id() -> str:
    """This job's submission id, which Ray's job supervisor passes the driver in its job
    config; `local-...` when the module runs outside a Ray job."""
    try:
        config = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
    except json.JSONDecodeError:
        config = {}
    found = (config.get("metadata") or {}).get("job_submission_id")
    return str(found) if found else f"local-{uuid.uuid4().hex[:8]}"


def configure_data() -> None:
    """Ray Data for a job in this process: no progress bars (in a job's log they bury the
    lines that explain what happened), and parquet read by the V1 datasource. The V2
    reader (Ray 2.60's default) starts footer-reader actors for every read, about 5 s of
    process start-up per read on 2 cores, and hands a one-file input over as one block,
    which leaves all but one model replica idle (profiled with benchmarks/training.py)."""
    from ray.data import DataContext

    os.environ["RAY_DATA_DISABLE_PROGRESS_BARS"] = "1"
    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.use_datasource_v2 = False


def code_version() -> str:
    """The code version: `ML_CODE_VERSION` (the service passes its git commit), the git
    commit of the working directory, else the package version."""
    if os.environ.get("ML_CODE_VERSION"):
        return os.environ["ML_CODE_VERSION"]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        if commit:
            return commit
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import version

    return f"ml-service-{version('ml-service')}"


def now_ms() -> int:
    """Epoch milliseconds."""
    return int(time.time() * 1000)
