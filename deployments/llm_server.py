"""The vLLM backend's replica and its launcher. Runs in the LLM environment only.

This module imports `ray.serve.llm`, which imports vLLM: it is loaded by the LLM
environment's interpreter (`.venv-llm`, made by `scripts/setup-llm`), never by the
service's own. The ingress talks to `ServiceLLMServer` through a Serve handle and only
ever sends and receives JSON-able values, so vLLM's types never cross into the service.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from ray import serve
from ray.serve.llm import LLMConfig, LLMServer, build_llm_deployment

from deployments.stream_coalescing import acknowledged, coalesced

ACCEPTED = {"object": "ml-service.accepted"}
"""The first item of an `openai` stream whose answer has not begun within `ACK_AFTER_S`:
this replica took the request (the ingress bounds the wait for the first item, not the
generation; `app.adapters.vllm_backend.ACCEPTED`)."""

ACK_AFTER_S = 0.05
"""How long a replica that took a request waits for the answer's first part before it
sends `ACCEPTED`: a quick answer (a first token, a short completion, an error) goes without
it, sparing a message on the way to the first token."""

FAILURE = "ml-service.engine-failure"
"""The message's prefix of the `RuntimeError` a failed generation is raised as
(`app.adapters.vllm_backend.FAILURE`): vLLM's and Ray Serve LLM's exception types do not
load in the service's environment, where Ray would hand over an `UnserializableException`
that names nothing."""

INTERVAL_ENV = "ML_LLM_STREAM_INTERVAL_MS"
"""The replica's environment variable of `serving.llm.stream_batching_interval_ms`
(`app.adapters.vllm_backend.INTERVAL_ENV`): the replica sends at most about one streamed
message per interval in all, each stream's first at once (`deployments.stream_coalescing`).
"""


class ServiceLLMServer(LLMServer):
    """Ray Serve LLM's vLLM server, with one JSON-in, JSON-out streaming method."""

    _streams = 0
    """The streamed answers this replica is sending now."""

    async def openai(self, kind: str, body: dict[str, Any]) -> AsyncGenerator[Any, None]:
        """Answer an OpenAI request (`kind`: chat or completions) given as its JSON body.

        Yields `ACCEPTED` first unless the answer begins within `ACK_AFTER_S`, then, when
        streaming, the server-sent-event strings (`data: {...}\\n\\n`), those that came
        within one interval joined into one; otherwise one JSON object: the whole
        response, or `{"error": {...}}`.

        A stream's interval is the configured one times the streams the replica is sending
        at the time: every message costs the same to relay (a Ray report, an HTTP chunk
        through the ingress and HAProxy, on the engine's CPUs), so the replica sends about
        one per configured interval in all, whatever the load; a stream's first message
        still goes at once.
        """
        from ray.llm._internal.serve.core.configs.openai_api_models import (
            ChatCompletionRequest,
            CompletionRequest,
            ErrorResponse,
        )

        request_type = ChatCompletionRequest if kind == "chat" else CompletionRequest
        try:
            request = request_type.model_validate(body)
        except Exception as exc:  # pydantic's message, as an OpenAI error
            yield {"error": {"message": str(exc)[:2000], "type": "BadRequestError", "code": 400}}
            return
        method = self.chat if kind == "chat" else self.completions
        interval_s = float(os.environ.get(INTERVAL_ENV) or 0) / 1000
        streamed = bool(getattr(request, "stream", False))
        self._streams += streamed
        try:
            every = (lambda: interval_s * self._streams) if interval_s > 0 else 0.0
            answer = _messages(method(request), every, ErrorResponse)
            async with aclosing(acknowledged(answer, ACK_AFTER_S, ACCEPTED)) as messages:
                async for message in messages:  # closed early: the engine's request too
                    yield message
        # A type that loads anywhere, named in its message; its traceback (Ray's error text)
        # keeps vLLM's, chained.
        except Exception as exc:
            raise RuntimeError(f"{FAILURE} {type(exc).__name__}: {exc}"[:4000]) from exc
        finally:
            self._streams -= streamed


async def _messages(
    started: Awaitable[AsyncIterator[Any]],
    interval_s: float | Callable[[], float],
    error_type: Any,  # Ray Serve LLM's ErrorResponse (vLLM's types load only there)
) -> AsyncIterator[Any]:
    """The engine's answer (`started`: Ray Serve LLM's `chat` or `completions` call) as the
    messages `ServiceLLMServer.openai` yields: the server-sent-event strings of one
    gathered batch joined into one; an error or a whole response as a JSON object."""
    async with aclosing(coalesced(await started, interval_s)) as batches:  # closed: vLLM aborts
        async for batch in batches:
            events: list[str] = []
            for item in batch:
                for part in item if isinstance(item, list) else [item]:
                    if isinstance(part, str):
                        events.append(part)
                        continue
                    if events:
                        yield "".join(events)
                        events = []
                    if isinstance(part, error_type):
                        yield {"error": part.error.model_dump()}
                    else:
                        yield part.model_dump(mode="json")
            if events:
                yield "".join(events)


def launch(app_name: str, config: dict[str, Any]) -> str:
    """Build the LLM application from `config` (an `LLMConfig` as a dict) and start it
    without an HTTP route (only the ingress reaches it, under the service's auth).
    Returns the deployment's name."""
    llm_config = LLMConfig.model_validate(config)
    app = build_llm_deployment(llm_config, deployment_cls=ServiceLLMServer)
    serve.run(app, name=app_name, route_prefix=None, blocking=False)
    return str(app._bound_deployment.name)
