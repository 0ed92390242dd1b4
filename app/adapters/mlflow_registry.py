"""`ModelCatalog` over MLflow's model registry: sources, versions, aliases and tags."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.exceptions import MlflowException
from mlflow.models import Model

from app.adapters.mlflow_errors import store_outages
from app.core.lifecycle import SINGULAR_STAGES
from app.core.registry import ModelSource
from app.core.tracking import DATASET_CONTEXT_TAG, EVALUATION_TAG
from app.errors import ErrorCode, InvalidInput

log = logging.getLogger(__name__)

# Files MLflow adds to a model directory when it is registered: not part of the artifact.
_REGISTRATION_FILES = frozenset({"registered_model_meta"})
STAGE_TAG = "mlservice.stage"
SEMVER_TAG = "mlservice.semver"
FEATURE_SERVICE_TAG = "mlservice.feature_service"
CODE_VERSION_TAGS = ("mlservice.code_version", "mlflow.source.git.commit")


class MlflowModelCatalog:
    """Registered models in MLflow; the service's stages mirrored as aliases and tags.

    Args:
        tracking_uri: the MLflow tracking and registry store.
    """

    def __init__(self, tracking_uri: str) -> None:
        # MLflow's registry store resolves a `models:/m-...` source through the process's
        # default tracking URI, whatever the client was given: the catalog's process (the
        # registry actor) is dedicated to this one store, so make it the default.
        mlflow.set_tracking_uri(tracking_uri)
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no log noise
        self._client = MlflowClient(tracking_uri, tracking_uri)

    @store_outages
    def describe(self, run_id: str, artifact_path: str) -> ModelSource:
        """See `ModelCatalog.describe`."""
        run = self._run(run_id)
        uri, location = self._model_location(run, artifact_path)
        with tempfile.TemporaryDirectory(prefix="ml-register-") as tmp:
            local = Path(download_artifacts(artifact_uri=location, dst_path=tmp))
            meta = Model.load(str(local))
            signature = meta.signature.to_dict() if meta.signature else None
            digest = artifact_digest(local)
        tags = dict(run.data.tags)
        return ModelSource(
            uri=uri,
            run_id=run_id,
            experiment_id=run.info.experiment_id,
            signature=signature,
            artifact_digest=digest,
            metrics=dict(run.data.metrics),
            datasets=tuple(_dataset(i) for i in (run.inputs.dataset_inputs if run.inputs else [])),
            feature_service=tags.get(FEATURE_SERVICE_TAG),
            code_version=next((tags[t] for t in CODE_VERSION_TAGS if t in tags), None),
            parent_run_id=tags.get("mlflow.parentRunId"),
            evaluation=_declared(tags.get(EVALUATION_TAG)),
        )

    @store_outages
    def create_version(
        self, name: str, source: ModelSource, description: str, tags: Mapping[str, str]
    ) -> int:
        """See `ModelCatalog.create_version`."""
        try:
            self._client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = self._client.create_model_version(
            name, source.uri, run_id=source.run_id, tags=dict(tags), description=description
        )
        return int(version.version)

    @store_outages
    def delete_version(self, name: str, version: int) -> None:
        """See `ModelCatalog.delete_version`."""
        self._client.delete_model_version(name, str(version))

    @store_outages
    def mirror(
        self,
        name: str,
        stages: Mapping[int, str],
        semvers: Mapping[int, str],
        aliases: Mapping[str, int],
    ) -> None:
        """See `ModelCatalog.mirror`."""
        for version, stage in stages.items():
            self._client.set_model_version_tag(name, str(version), STAGE_TAG, stage)
            self._client.set_model_version_tag(name, str(version), SEMVER_TAG, semvers[version])
        current = self.aliases(name)
        for stage in SINGULAR_STAGES:
            alias, wanted = stage.value, aliases.get(stage.value)
            if wanted is None and alias in current:
                self._client.delete_registered_model_alias(name, alias)
            elif wanted is not None and current.get(alias) != wanted:
                self._client.set_registered_model_alias(name, alias, str(wanted))

    @store_outages
    def aliases(self, name: str) -> dict[str, int]:
        """See `ModelCatalog.aliases`."""
        model = self._client.get_registered_model(name)
        return {alias: int(version) for alias, version in (model.aliases or {}).items()}

    def ping(self) -> None:
        """Touch the registry."""
        self._client.search_registered_models(max_results=1)

    def _run(self, run_id: str) -> Any:
        try:
            return self._client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
                raise _no_source("run_id", f"no run {run_id!r}") from None
            raise

    def _model_location(self, run: Any, artifact_path: str) -> tuple[str, str]:
        """The model logged by the run under `artifact_path`, as (registry source URI,
        where its files are): an MLflow 3 logged model, or a model directory among the
        run's artifacts (MLflow 2 style)."""
        outputs = run.outputs.model_outputs if run.outputs else []
        for output in outputs:
            logged = self._client.get_logged_model(output.model_id)
            if logged.name == artifact_path:
                return f"models:/{logged.model_id}", str(logged.artifact_location)
        names = {a.path for a in self._client.list_artifacts(run.info.run_id, artifact_path)}
        if f"{artifact_path}/MLmodel" in names:
            location = f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}"
            return f"runs:/{run.info.run_id}/{artifact_path}", location
        raise _no_source(
            "artifact_path",
            f"run {run.info.run_id!r} logged no model named {artifact_path!r}",
        )


def artifact_digest(directory: Path) -> str:
    """SHA-256 over every file of a model directory (relative path and content), in order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        if relative in _REGISTRATION_FILES:
            continue
        digest.update(relative.encode("utf-8") + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def _declared(text: str | None) -> dict[str, str]:
    """The evaluation metrics a run declared (`{"val_loss": "minimize", ...}`)."""
    if not text:
        return {}
    try:
        declared = json.loads(text)
    except ValueError:
        log.warning("tag %s is not JSON: %r", EVALUATION_TAG, text[:200])
        return {}
    goals = {"maximize", "minimize"}
    if not isinstance(declared, dict):
        return {}
    return {str(k): str(v) for k, v in declared.items() if v in goals}


def _dataset(dataset_input: Any) -> dict[str, Any]:
    d = dataset_input.dataset
    context = next((t.value for t in dataset_input.tags if t.key == DATASET_CONTEXT_TAG), None)
    return {
        "name": d.name,
        "digest": d.digest,
        "source_type": d.source_type,
        "source": d.source,
        "schema": d.schema,
        "context": context,
    }


def _no_source(field: str, message: str) -> InvalidInput:
    return InvalidInput.for_field(field, message, code=ErrorCode.MODEL_SOURCE_NOT_FOUND)
