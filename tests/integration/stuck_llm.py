"""A stand-in for the vLLM replica's own interface (`ServiceLLMServer.openai`, ours) that
never starts answering: a Serve deployment, so the ingress's call goes through a real Serve
handle. It counts the requests Serve cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from ray import serve


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
