"""`ModelSignatures` from MLflow: a registered version's signature and input example,
read from its model metadata (the MLmodel file and the example, not the weights) once
and kept (a version's artifacts never change)."""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from app.adapters.mlflow_errors import is_object_store_outage, object_store_unavailable
from app.core.signature import Signature
from app.errors import ErrorCode, NotFound, Unavailable

log = logging.getLogger(__name__)


class MlflowSignatures:
    """Signatures of registered versions.

    Args:
        tracking_uri: the MLflow store the registry uses.
    """

    def __init__(self, tracking_uri: str) -> None:
        self._tracking_uri = tracking_uri
        self._cache: dict[tuple[str, int], Signature | None] = {}
        self._lock = threading.Lock()

    def signature(self, model: str, version: int) -> Signature | None:
        """See `ModelSignatures.signature`."""
        key = (model, version)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        found = self._read(model, version)
        with self._lock:
            self._cache[key] = found
        return found

    def _read(self, model: str, version: int) -> Signature | None:
        import mlflow
        from mlflow.models import get_model_info

        uri = f"models:/{model}/{version}"
        mlflow.set_tracking_uri(self._tracking_uri)
        try:
            info = get_model_info(uri)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise NotFound(
                    ErrorCode.MODEL_VERSION_NOT_FOUND,
                    f"Model {model!r} has no version {version}.",
                    model=model,
                    version=version,
                ) from None
            raise _unavailable(exc) from None
        except OSError as exc:
            raise _unavailable(exc) from None
        except Exception as exc:  # boto3's, when the object store is out
            if is_object_store_outage(exc):
                log.warning("model metadata unavailable: %s", type(exc).__name__)
                raise object_store_unavailable() from None
            raise
        if info.signature is None:
            return None
        return Signature.from_mlflow(info.signature.to_dict(), _example(uri, info))


def _example(uri: str, info: Any) -> Any:
    """The logged input example as plain JSON (records for a table), or None."""
    import mlflow

    saved = getattr(info, "saved_input_example_info", None) or {}
    path = saved.get("artifact_path")
    if not path:
        return None
    with tempfile.TemporaryDirectory(prefix="example-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=f"{uri}/{path}", dst_path=tmp)
            data = json.loads(Path(local).read_text())
        except (MlflowException, OSError, ValueError):
            log.info("%s: input example %s not readable", uri, path)
            return None
    if isinstance(data, dict) and "dataframe_split" in data:
        data = data["dataframe_split"]
    if isinstance(data, dict) and {"columns", "data"} <= set(data):
        return [dict(zip(data["columns"], row, strict=False)) for row in data["data"]]
    if isinstance(data, dict) and "inputs" in data:
        return data["inputs"]
    return data


def _unavailable(exc: BaseException) -> Unavailable:
    log.warning("model metadata unavailable: %s", type(exc).__name__)
    return Unavailable(
        ErrorCode.BACKEND_UNAVAILABLE, "The model store is unavailable; retry shortly."
    )
