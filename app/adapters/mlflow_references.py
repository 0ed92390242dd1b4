"""Drift references from MLflow: the `monitoring/reference.json` a training job logs in
the run of each version it registers."""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from app.core.drift import REFERENCE_ARTIFACT, Reference

log = logging.getLogger(__name__)


class MlflowReferences:
    """A version's reference, read once and kept (a version's artifacts never change).

    Args:
        tracking_uri: the MLflow store the registry uses.
    """

    def __init__(self, tracking_uri: str) -> None:
        self._client = MlflowClient(tracking_uri)
        self._cache: dict[tuple[str, int], Reference | None] = {}
        self._lock = threading.Lock()

    def get(self, model: str, version: int) -> Reference | None:
        """The version's reference; None when the version has none (registered from a run
        that did not log one) or does not exist."""
        key = (model, version)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        reference, final = self._read(model, version)
        if final:  # a passing outage is read again next time
            with self._lock:
                self._cache[key] = reference
        return reference

    def _read(self, model: str, version: int) -> tuple[Reference | None, bool]:
        """The reference, and whether the answer holds for good."""
        try:
            run_id = self._client.get_model_version(model, str(version)).run_id
        except MlflowException as exc:
            return None, exc.error_code == "RESOURCE_DOES_NOT_EXIST"
        if not run_id:
            return None, True
        with tempfile.TemporaryDirectory(prefix="reference-") as tmp:
            try:
                path = self._client.download_artifacts(run_id, REFERENCE_ARTIFACT, tmp)
            except (MlflowException, OSError):
                log.info("%s v%d has no drift reference (%s)", model, version, REFERENCE_ARTIFACT)
                return None, True
            return Reference.from_dict(json.loads(Path(path).read_text())), True
