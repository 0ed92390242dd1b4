"""The vLLM backend's replica and its launcher. Runs in the LLM environment only.

This module imports `ray.serve.llm`, which imports vLLM: it is loaded by the LLM
environment's interpreter (`.venv-llm`, made by `scripts/setup-llm`), never by the
service's own. The ingress talks to `ServiceLLMServer` through a Serve handle and only
ever sends and receives JSON-able values, so vLLM's types never cross into the service.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from typing import Any

from ray import serve
from ray.serve.llm import LLMConfig, LLMServer, build_llm_deployment

from deployments.stream_coalescing import coalesced

ACCEPTED = {"object": "ml-service.accepted"}
"""The first item of every `openai` stream: this replica took the request (the ingress
bounds the wait for it, not the generation; `app.adapters.vllm_backend.ACCEPTED`)."""

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

        Yields `ACCEPTED` first, then, when streaming, the server-sent-event strings
        (`data: {...}\\n\\n`), those that came within one interval joined into one;
        otherwise one JSON object: the whole response, or `{"error": {...}}`.

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

        yield ACCEPTED
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
            async for batch in coalesced(await method(request), every):
                events: list[str] = []
                for item in batch:
                    for part in item if isinstance(item, list) else [item]:
                        if isinstance(part, str):
                            events.append(part)
                            continue
                        if events:
                            yield "".join(events)
                            events = []
                        if isinstance(part, ErrorResponse):
                            yield {"error": part.error.model_dump()}
                        else:
                            yield part.model_dump(mode="json")
                if events:
                    yield "".join(events)
        # A type that loads anywhere, named in its message; its traceback (Ray's error text)
        # keeps vLLM's, chained.
        except Exception as exc:
            raise RuntimeError(f"{FAILURE} {type(exc).__name__}: {exc}"[:4000]) from exc
        finally:
            self._streams -= streamed


def launch(app_name: str, config: dict[str, Any]) -> str:
    """Build the LLM application from `config` (an `LLMConfig` as a dict) and start it
    without an HTTP route (only the ingress reaches it, under the service's auth).
    Returns the deployment's name."""
    llm_config = LLMConfig.model_validate(config)
    app = build_llm_deployment(llm_config, deployment_cls=ServiceLLMServer)
    serve.run(app, name=app_name, route_prefix=None, blocking=False)
    return str(app._bound_deployment.name)
