"""The OpenAI-compatible LLM routes' logic: route to a variant, stream, record.

`POST /llm/v1/chat/completions` and `/llm/v1/completions` name a registered model in
`model`. The model's routing table picks the variant (a sticky key from the `user` field
or the `X-Request-Key` header, as for `/predict`), so LLM versions take part in A/B tests,
canaries and the registry's serving evidence like any other model.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from app.core.feedback import PredictionRef
from app.core.routing import Backend, Variant
from app.errors import ErrorCode, InvalidInput, NotFound, UpstreamFailed
from app.ports.serving import LlmBackend, RoutingSource, ServingRecorder


@dataclass(frozen=True)
class LlmAnswer:
    """A routed LLM call: the variant, and either the whole response or a stream."""

    model: str
    version: int
    variant: str
    response: dict[str, Any] | None
    stream: AsyncIterator[str] | None  # closing it early records the request as failed


class LlmGateway:
    """Routes OpenAI requests to the vLLM engine of the chosen variant.

    Args:
        tables: the ingress's routing tables.
        backend: the vLLM engines.
        recorder: request statistics (as for `/predict`).
        draw: uniform random numbers in [0, 1) (injectable for tests).
    """

    def __init__(
        self,
        tables: RoutingSource,
        backend: LlmBackend,
        recorder: ServingRecorder,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._tables = tables
        self._backend = backend
        self._recorder = recorder
        self._draw = draw

    async def call(
        self, kind: str, body: dict[str, Any], key: str | None, request_id: str
    ) -> LlmAnswer:
        """Route and send the request.

        Raises:
            NotFound: the model is not deployed (`not_deployed`).
            InvalidInput: the chosen variant is not an LLM, or the engine rejected the body.
            UpstreamFailed: the engine failed.
        """
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidInput.for_field("model", "the registered model to call")
        table = self._tables.get(model)
        if table is None:
            raise NotFound(ErrorCode.NOT_DEPLOYED, f"Model {model!r} is not deployed.", model=model)
        variant = table.choose(key or _user(body), self._draw())
        if variant.backend is not Backend.VLLM:
            raise InvalidInput.for_field(
                "model", f"{model} {variant.name} is not an LLM deployment: call /predict"
            )
        self._recorder.started(model, variant.name)
        started = time.perf_counter()
        try:
            stream = self._backend.stream(model, variant.version, kind, body)
            first = await anext(stream, None)
        except BaseException:
            self._finish(model, variant, started, ok=False)
            raise
        if isinstance(first, dict) or first is None:
            if _client_error(first):  # a bad request is the client's, not the version's
                self._recorder.rejected(model, variant.name)
            else:
                self._finish(model, variant, started, ok=first is not None and "error" not in first)
            response = _checked(first)
            self._remember(request_id, model, variant, response)
            return LlmAnswer(model, variant.version, variant.name, response, None)
        return LlmAnswer(
            model,
            variant.version,
            variant.name,
            None,
            self._relay(first, stream, model, variant, started),
        )

    def _relay(
        self, first: str, rest: AsyncIterator[Any], model: str, variant: Variant, started: float
    ) -> _Relay:
        return _Relay(first, rest, lambda ok: self._finish(model, variant, started, ok=ok))

    def _finish(self, model: str, variant: Variant, started: float, *, ok: bool) -> None:
        latency = (time.perf_counter() - started) * 1000
        self._recorder.finished(model, variant.name, latency, ok)

    def _remember(
        self, request_id: str, model: str, variant: Variant, response: dict[str, Any]
    ) -> None:
        texts = tuple(
            (choice.get("message") or {}).get("content") or choice.get("text") or ""
            for choice in response.get("choices", [])
        )
        self._recorder.predicted(
            PredictionRef(request_id, model, variant.name, variant.version, time.time(), texts)
        )


class _Relay:
    """The engine's stream as server-sent events, recording the request's end exactly
    once: when the stream ends (ok), fails or is closed early, or, if the response never
    started (a client gone before the first byte), when it is dropped (not ok)."""

    def __init__(self, first: str, rest: AsyncIterator[Any], done: Callable[[bool], None]) -> None:
        self._first: str | None = first
        self._rest = rest
        self._done: Callable[[bool], None] | None = done

    def __aiter__(self) -> _Relay:
        return self

    async def __anext__(self) -> str:
        if self._first is not None:
            chunk, self._first = self._first, None
            return chunk
        try:
            item = await anext(self._rest)
        except StopAsyncIteration:
            self._end(True)
            raise
        except BaseException:
            self._end(False)
            raise
        return item if isinstance(item, str) else f"data: {json.dumps(item)}\n\n"

    async def aclose(self) -> None:
        """Stop early (the client went away): the request did not complete."""
        self._end(False)
        close = getattr(self._rest, "aclose", None)
        if close is not None:
            await close()

    def _end(self, ok: bool) -> None:
        done, self._done = self._done, None
        if done is not None:
            done(ok)

    def __del__(self) -> None:
        self._end(False)


def _user(body: dict[str, Any]) -> str | None:
    user = body.get("user")
    return user if isinstance(user, str) and user else None


def _client_error(response: dict[str, Any] | None) -> bool:
    error = (response or {}).get("error")
    return isinstance(error, dict) and int(error.get("code") or 500) < 500


def _checked(response: dict[str, Any] | None) -> dict[str, Any]:
    if response is None:
        raise UpstreamFailed(ErrorCode.PREDICTION_FAILED, "The LLM engine returned nothing.")
    error = response.get("error")
    if error is None:
        return response
    message = str(error.get("message") or error)[:1000]
    if int(error.get("code") or 500) < 500:
        raise InvalidInput.for_field("body", message)
    raise UpstreamFailed(ErrorCode.PREDICTION_FAILED, f"The LLM engine failed: {message}")
