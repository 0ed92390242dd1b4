"""`ServingEvidence` from the traffic actor: live checks, A/B verdicts and draining.

The registry asks this for the evidence of its serving gates. Without a traffic actor
(or while it restarts) there is no evidence, and the gates that need it block.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray

from app.adapters.named_actor import NamedActor
from app.core.gates import Evidence

log = logging.getLogger(__name__)


class TrafficServingEvidence:
    """Asks the traffic actor (by name) for evidence.

    Args:
        traffic: the traffic actor's name and namespace.
        timeout_s: how long a gate waits for an answer before reporting no evidence.
    """

    def __init__(self, traffic: NamedActor, timeout_s: float = 30.0) -> None:
        self._traffic = traffic
        self._timeout_s = timeout_s

    async def integration(self, model: str, version: int) -> Evidence | None:
        """See `ServingEvidence.integration`."""
        return await self._ask("integration_evidence", model, version)

    async def ab_verdict(self, model: str, candidate: int, baseline: int | None) -> Evidence | None:
        """See `ServingEvidence.ab_verdict`."""
        return await self._ask("ab_evidence", model, candidate, baseline)

    async def traffic(self, model: str, version: int) -> Evidence | None:
        """See `ServingEvidence.traffic`."""
        return await self._ask("traffic_evidence", model, version)

    async def _ask(self, method: str, *args: Any) -> Evidence | None:
        try:
            handle = self._traffic.handle()
        except ValueError:
            return None  # no serving layer running: no evidence
        try:
            ref = getattr(handle, method).remote(*args)
            result: Evidence | None = await asyncio.wait_for(ref, self._timeout_s)
            return result
        except TimeoutError:
            log.warning("traffic actor did not answer %s in %s s", method, self._timeout_s)
            return None
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            log.warning("traffic actor unavailable for %s", method)
            self._traffic.forget()
            return None
