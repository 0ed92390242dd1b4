"""The model server: MLflow pyfunc models by version, many versions per replica.

A plain class. The builder applies Serve's model multiplexing to `load` (so the ingress
routes `"<model>/<version>"` to a replica that already holds it, and replicas keep the
most recently used versions) and request batching to `predict_batch` (one model call for
the rows of concurrent requests, when the model's output has one row per input row).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.core.model_io import (
    RowBlock,
    as_model_input,
    rows_of,
    split_output,
    to_jsonable,
)
from app.errors import ErrorCode, NotFound, Unavailable, UpstreamFailed
from app.logs import configure_logging

log = logging.getLogger(__name__)


class LoadedModel:
    """A pyfunc model and the input schema it declares."""

    def __init__(self, model_id: str, pyfunc: Any) -> None:
        self.model_id = model_id
        self.pyfunc = pyfunc
        metadata = pyfunc.metadata
        schema = metadata.get_input_schema() if metadata else None
        self.tensor_input = bool(schema is not None and schema.is_tensor_spec())
        self.dtype = str(schema.numpy_types()[0]) if self.tensor_input and schema else None
        self.columns = (
            list(schema.input_names()) if schema is not None and schema.has_input_names() else None
        )


class ModelServer:
    """Loads versions from the MLflow registry and predicts on blocks of rows.

    `batched` is set by the builder when it applies Serve's request batching.

    One load per version runs at a time: concurrent requests for a version that is loading
    wait for that load (each until the load's deadline), so a load that never returns
    (a model whose code hangs) holds one thread, not one per request, and once its
    deadline has passed the requests for it fail at once instead of waiting again.

    Args:
        tracking_uri: the MLflow tracking and registry store.
        load_timeout_s: a version that does not load in time is an error, not a hang.
        log_level: the service log level.
    """

    batched = False

    def __init__(
        self, tracking_uri: str, load_timeout_s: float = 120.0, log_level: str = "INFO"
    ) -> None:
        import mlflow

        configure_logging(log_level)
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        mlflow.set_tracking_uri(tracking_uri)  # a dedicated process: models:/ URIs resolve here
        self._load_timeout_s = load_timeout_s
        self._loading: dict[str, _Loading] = {}

    def _started_load(self, model_id: str) -> _Loading:
        """The load of `model_id` in flight, or a new one (forgotten when it ends)."""
        loading = self._loading.get(model_id)
        if loading is not None:
            return loading
        name, _, version = model_id.rpartition("/")
        task = asyncio.ensure_future(asyncio.to_thread(_load_pyfunc, f"models:/{name}/{version}"))
        loading = _Loading(task, time.monotonic() + self._load_timeout_s)
        self._loading[model_id] = loading

        def ended(done: asyncio.Future[Any]) -> None:
            if self._loading.get(model_id) is loading:
                del self._loading[model_id]
            if not done.cancelled():
                done.exception()  # read here, so an unwaited failure is not reported again

        task.add_done_callback(ended)
        return loading

    async def load(self, model_id: str) -> LoadedModel:
        """Load `"<model>/<version>"` (Serve caches the result per replica).

        Raises:
            NotFound: no such registered version (`model_version_not_found`).
            Unavailable: it exists but does not load, or not in time (`model_load_failed`).
        """
        name, _, version = model_id.rpartition("/")
        loading = self._started_load(model_id)
        try:
            pyfunc = await asyncio.wait_for(
                asyncio.shield(loading.task), max(0.0, loading.deadline - time.monotonic())
            )
        except TimeoutError:
            raise Unavailable(
                ErrorCode.MODEL_LOAD_FAILED,
                f"Version {version} of {name!r} did not load in {self._load_timeout_s:g} s.",
                model=name,
                version=version,
            ) from None
        except _Missing:
            raise NotFound(
                ErrorCode.MODEL_VERSION_NOT_FOUND,
                f"Model {name!r} has no version {version}.",
                model=name,
                version=version,
            ) from None
        except Exception:
            log.exception("version %s of %s failed to load", version, name)
            raise Unavailable(
                ErrorCode.MODEL_LOAD_FAILED,
                f"Version {version} of {name!r} failed to load (see the log).",
                model=name,
                version=version,
            ) from None
        log.info("loaded %s", model_id)
        return LoadedModel(model_id, pyfunc)

    async def predict(self, model_id: str, block: RowBlock) -> list[Any]:
        """Predictions for one request's rows (batched with concurrent requests).

        Raises:
            NotFound, Unavailable: the version is missing or does not load.
            UpstreamFailed: the model failed on these rows (`prediction_failed`).
        """
        result: Any
        if self.batched:  # Serve's batch wrapper (see the builder) takes one request's args
            result = await self.predict_batch(model_id, block)  # type: ignore[arg-type]
        else:
            result = (await self.predict_batch([model_id], [block]))[0]
        if isinstance(result, Exception):
            raise result
        answer: list[Any] = result
        return answer

    async def predict_batch(
        self, model_ids: Sequence[str], blocks: Sequence[RowBlock]
    ) -> list[list[Any] | UpstreamFailed]:
        """Predictions for several requests to the same version: one model call when the
        output has a row per input row, else (or when it fails) one call per request, so a
        request the model fails on does not fail the others."""
        model = await self.load(model_ids[0])
        # Inline, not in a thread: a prediction is CPU work under the GIL either way, and
        # the hop costs more than small models take.
        return _predict_blocks(model, list(blocks))

    def check_health(self) -> None:
        """Serve's health check: the replica answers."""


@dataclass(frozen=True)
class _Loading:
    """A version's load in flight: its thread's task and when it is late."""

    task: asyncio.Future[Any]
    deadline: float


class _Missing(Exception):
    """The registry has no such version."""


def _load_pyfunc(uri: str) -> Any:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise _Missing(uri) from None
        raise


def _predict_blocks(model: LoadedModel, blocks: list[RowBlock]) -> list[list[Any] | UpstreamFailed]:
    if len(blocks) > 1:
        try:
            joined = model.pyfunc.predict(
                as_model_input(model.tensor_input, model.dtype, model.columns, blocks)
            )
            parts = split_output(joined, [rows_of(block) for block in blocks])
        except Exception:
            parts = None  # find out which request the model fails on, one at a time
        if parts is not None:
            return [to_jsonable(part) for part in parts]
    return [_predict_one(model, block) for block in blocks]


def _predict_one(model: LoadedModel, block: RowBlock) -> list[Any] | UpstreamFailed:
    try:
        output = model.pyfunc.predict(
            as_model_input(model.tensor_input, model.dtype, model.columns, [block])
        )
        return to_jsonable(output)
    except Exception:
        log.exception("prediction failed on %s", model.model_id)
        return UpstreamFailed(
            ErrorCode.PREDICTION_FAILED,
            f"The model {model.model_id} failed on this input (see the service log).",
            model=model.model_id,
        )
