"""`ServingEvidence` from the traffic actor: live checks, A/B verdicts and draining, in
one call. While the actor restarts (or does not answer in time) there is no evidence,
and the gates that need it block."""

from __future__ import annotations

import logging
from typing import Any

from app.adapters.actor_client import ActorClient
from app.core.promotion_evidence import EvidenceRequest, ServingFacts
from app.errors import Unavailable

log = logging.getLogger(__name__)


class TrafficServingEvidence:
    """Asks the traffic actor.

    Args:
        handle: the traffic actor's handle (passed in by the application builder).
        timeout_s: how long a promotion waits for an answer before it has no evidence.
    """

    def __init__(self, handle: Any, timeout_s: float = 30.0) -> None:
        self._actor = ActorClient(handle, "the traffic service")
        self._timeout_s = timeout_s

    async def facts(self, model: str, request: EvidenceRequest) -> ServingFacts | None:
        """See `ServingEvidence.facts`."""
        try:
            facts: ServingFacts = await self._actor.call(
                "serving_facts", model, request, timeout_s=self._timeout_s
            )
            return facts
        except Unavailable:
            return None
