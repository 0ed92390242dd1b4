"""`DriftReferences`: what each version's traffic is compared with, from the first source
that has one:

1. training: the `monitoring/reference.json` a training job logs in the version's run;
2. dataset: the training dataset the version's run logged as an MLflow dataset input
   (its source readable through the storage: a parquet file or directory), profiled on
   the version's signature columns (a notebook's run that logged its data);
3. live_window: the version's first live traffic, kept in the storage by the monitor
   (`references/<model>/<version>.json`) when there was no other.

A found reference is kept in memory (a version's artifacts never change).
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from app.core.drift import REFERENCE_ARTIFACT, Reference, capture
from app.ports.storage import Storage

log = logging.getLogger(__name__)

DATASET_ROWS = 100_000  # at most this many rows of a logged dataset are profiled


class StoredReferences:
    """References from MLflow and the storage.

    Args:
        tracking_uri: the MLflow store the registry uses.
        storage: where live-window references are kept, and datasets are read from.
    """

    def __init__(self, tracking_uri: str, storage: Storage) -> None:
        self._client = MlflowClient(tracking_uri)
        self._storage = storage
        self._found: dict[tuple[str, int], Reference] = {}
        self._none_in_mlflow: set[tuple[str, int]] = set()
        self._lock = threading.Lock()

    def get(self, model: str, version: int) -> Reference | None:
        """See `DriftReferences.get`."""
        key = (model, version)
        with self._lock:
            if key in self._found:
                return self._found[key]
            checked = key in self._none_in_mlflow
        reference = None
        if not checked:
            reference, final = self._from_mlflow(model, version)
            if reference is None and final:
                with self._lock:
                    self._none_in_mlflow.add(key)
        if reference is None:
            reference = self._kept(model, version)
        if reference is not None:
            with self._lock:
                self._found[key] = reference
        return reference

    def keep(self, model: str, version: int, reference: Reference) -> None:
        """See `DriftReferences.keep`."""
        data = json.dumps(reference.to_dict()).encode()
        self._storage.write_bytes(_key(model, version), data)
        with self._lock:
            self._found[(model, version)] = reference

    def _kept(self, model: str, version: int) -> Reference | None:
        try:
            return Reference.from_dict(json.loads(self._storage.read_bytes(_key(model, version))))
        except FileNotFoundError:
            return None

    def _from_mlflow(self, model: str, version: int) -> tuple[Reference | None, bool]:
        """The training or dataset reference, and whether the answer holds for good."""
        try:
            model_version = self._client.get_model_version(model, str(version))
        except MlflowException as exc:
            return None, exc.error_code == "RESOURCE_DOES_NOT_EXIST"
        run_id = model_version.run_id
        if not run_id:
            return None, True
        with tempfile.TemporaryDirectory(prefix="reference-") as tmp:
            try:
                path = self._client.download_artifacts(run_id, REFERENCE_ARTIFACT, tmp)
                return Reference.from_dict(json.loads(Path(path).read_text())), True
            except (MlflowException, OSError):
                pass
        try:
            return self._from_dataset(model_version), True
        except Exception:
            log.info("%s v%d: its run's dataset gives no reference", model, version, exc_info=True)
            return None, True

    def _from_dataset(self, model_version: Any) -> Reference | None:
        """A reference profiled from the run's logged training dataset, if readable."""
        import pyarrow.parquet as pq

        run = self._client.get_run(model_version.run_id)
        inputs = run.inputs.dataset_inputs if run.inputs else []
        training = [i for i in inputs if any(t.value == "training" for t in i.tags)] or inputs
        for dataset_input in training:
            uri = _source_uri(dataset_input.dataset.source)
            if not uri:
                continue
            filesystem, path = self._storage.locate(uri)
            table = pq.read_table(path, filesystem=filesystem)
            frame = table.slice(0, DATASET_ROWS).to_pandas()
            columns = _signature_columns(model_version.source, frame)
            if columns:
                reference = capture({name: frame[name].to_numpy() for name in columns})
                return Reference(reference.features, reference.rows, "dataset")
        return None


def _key(model: str, version: int) -> str:
    return f"references/{model}/{version}.json"


def _source_uri(source: str) -> str | None:
    try:
        parsed = json.loads(source)
    except (TypeError, ValueError):
        return source or None
    uri = parsed.get("uri") or parsed.get("path") if isinstance(parsed, dict) else None
    return str(uri) if uri else None


def _signature_columns(model_uri: str, frame: Any) -> list[str]:
    """The model's named input columns found in the frame (else every column)."""
    from mlflow.models import get_model_info

    try:
        signature = get_model_info(model_uri).signature
    except Exception:
        signature = None
    names = signature.inputs.input_names() if signature and signature.inputs else []
    present = [str(n) for n in names if n in frame.columns]
    return present or [str(c) for c in frame.columns]
