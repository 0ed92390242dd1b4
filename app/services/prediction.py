"""The predict path: route locally, call the model server, mirror to a shadow, record.

Everything here runs in the ingress replica for each request, so nothing on it waits for
an actor: the routing table is a local copy, statistics and prediction references go to
an in-memory recorder that ships them in batches.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.core.feedback import PredictionRef
from app.core.model_io import RowBlock, check_block
from app.core.routing import Backend, Variant
from app.core.signature import Signature, conform
from app.errors import DomainError, ErrorCode, InvalidInput, NotFound, Unavailable
from app.ports.registry import ModelSignatures
from app.ports.serving import ModelInvoker, PredictionSink, RoutingSource, ServingRecorder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """The answer to one predict request."""

    request_id: str
    model: str
    version: int
    variant: str
    predictions: list[Any]


FeatureInputsFn = Callable[[str, int, Sequence[Mapping[str, Any]]], Awaitable[list[dict[str, Any]]]]


class Predictor:
    """Serves `POST /predict`.

    Args:
        tables: the local routing tables.
        invoker: calls model servers.
        recorder: buffers stats and references.
        max_rows: rows allowed per request.
        draw: uniform random numbers in [0, 1) (injectable for tests).
        feature_inputs: model inputs from entity keys (the feature store), for versions
            trained on a feature service.
        log: the prediction log (monitoring).
        signatures: each version's input signature: requests are checked against it
            before the model runs (None: not checked here, the model server converts).
    """

    def __init__(
        self,
        tables: RoutingSource,
        invoker: ModelInvoker,
        recorder: ServingRecorder,
        max_rows: int,
        draw: Callable[[], float] = random.random,
        feature_inputs: FeatureInputsFn | None = None,
        log: PredictionSink | None = None,
        signatures: ModelSignatures | None = None,
    ) -> None:
        self._tables = tables
        self._invoker = invoker
        self._recorder = recorder
        self._max_rows = max_rows
        self._draw = draw
        self._feature_inputs = feature_inputs
        self._log = log
        self._signatures = signatures
        self._known: dict[tuple[str, int], Signature | None] = {}
        self._shadows: set[asyncio.Task[None]] = set()

    async def predict(
        self,
        model: str,
        inputs: Any,
        key: str | None,
        request_id: str,
        entities: Sequence[Mapping[str, Any]] | None = None,
    ) -> Prediction:
        """Route the request to a variant and predict, on `inputs` or, for a version
        trained on a feature service, on the online features of `entities`.

        Raises:
            NotFound: the model is not deployed (`not_deployed`).
            InvalidInput: the inputs are malformed or do not match the version's signature
                (named by row and column); entities without online features. A client's
                mistake never counts as the version's error.
        """
        table = self._tables.get(model)
        if table is None:
            raise NotFound(ErrorCode.NOT_DEPLOYED, f"Model {model!r} is not deployed.", model=model)
        variant = table.choose(key, self._draw())
        if entities is not None:
            if self._feature_inputs is None:
                raise InvalidInput.for_field("entities", "the feature store is not running")
            if len(entities) > self._max_rows:
                raise InvalidInput.for_field("entities", f"at most {self._max_rows} rows")
            inputs = await self._feature_inputs(model, variant.version, entities)
        try:
            block = await self._conform(model, variant, check_block(inputs, self._max_rows))
        except InvalidInput:  # counted as the client's (rejected), never as the version's
            self._recorder.started(model, variant.name)
            self._recorder.rejected(model, variant.name)
            raise
        predictions = await self._call(model, variant, block)
        if self._log is not None:
            self._log.record(model, variant.version, variant.name, request_id, block, predictions)
        self._recorder.predicted(
            PredictionRef(
                request_id, model, variant.name, variant.version, time.time(), tuple(predictions)
            )
        )
        shadow = table.shadow()
        if shadow is not None and table.mirrors(key, self._draw()):
            task = asyncio.ensure_future(
                self._mirror(model, shadow, block, predictions, request_id)
            )
            self._shadows.add(task)
            task.add_done_callback(self._shadows.discard)
        return Prediction(request_id, model, variant.version, variant.name, predictions)

    async def _conform(self, model: str, variant: Variant, block: RowBlock) -> RowBlock:
        """The rows checked against (and coerced to) the version's signature (LLM versions
        are not called here: the invoker says where they are)."""
        if self._signatures is None or variant.backend is Backend.VLLM:
            return block
        version = variant.version
        key = (model, version)
        if key not in self._known:
            try:
                self._known[key] = await asyncio.to_thread(
                    self._signatures.signature, model, version
                )
            except (NotFound, Unavailable) as exc:  # the model server will say what it is
                log.info("no signature check for %s v%d: %s", model, version, exc.code)
                return block
        return conform(block, self._known[key])

    async def _call(self, model: str, variant: Variant, block: RowBlock) -> list[Any]:
        self._recorder.started(model, variant.name)
        started = time.perf_counter()
        try:
            predictions = await self._invoker.predict(model, variant, block)
        except InvalidInput:  # the client's mistake, found by the backend: not an error
            self._recorder.rejected(model, variant.name)
            raise
        except BaseException:
            self._recorder.finished(model, variant.name, _ms_since(started), False)
            raise
        self._recorder.finished(model, variant.name, _ms_since(started), True)
        return predictions

    async def _mirror(
        self, model: str, shadow: Variant, block: RowBlock, primary: list[Any], request_id: str
    ) -> None:
        """The shadow's answer is compared and recorded, never returned."""
        try:
            block = await self._conform(model, shadow, block)
            mirrored = await self._call(model, shadow, block)
        except DomainError as exc:
            log.info("shadow %s of %s failed: %s", shadow.name, model, exc.code)
            return
        except Exception:
            log.exception("shadow %s of %s failed", shadow.name, model)
            return
        agreed = sum(_same(a, b) for a, b in zip(primary, mirrored, strict=False))
        self._recorder.compared(model, shadow.name, len(primary), agreed)
        if self._log is not None:
            self._log.record(
                model, shadow.version, shadow.name, f"{request_id}:shadow", block, mirrored
            )
        self._recorder.predicted(
            PredictionRef(
                f"{request_id}:shadow",
                model,
                shadow.name,
                shadow.version,
                time.time(),
                tuple(mirrored),
            )
        )


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
