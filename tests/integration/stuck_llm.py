"""Stand-ins for the vLLM replica's own interface (`ServiceLLMServer.openai`, ours): one
that never takes a request (it counts the requests Serve cancelled), one that takes it and
answers slowly. Serve deployments, so the ingress's call goes through a real Serve handle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from ray import serve

from app.adapters.vllm_backend import ACCEPTED


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
class StuckLLMServer:
    def __init__(self) -> None:
        self.cancelled = 0

    async def openai(self, kind: str, body: dict[str, Any]) -> AsyncGenerator[Any, None]:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        yield {}

    def cancellations(self) -> int:
        return self.cancelled


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
class SlowLLMServer:
    """Takes a request at once (`ACCEPTED`, as `ServiceLLMServer` does for an answer that
    has not begun within 50 ms), answers after `seconds`: a long generation."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def openai(self, kind: str, body: dict[str, Any]) -> AsyncGenerator[Any, None]:
        yield ACCEPTED
        await asyncio.sleep(self.seconds)
        yield {"object": "text_completion", "choices": [{"text": "late"}]}
