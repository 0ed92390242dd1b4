"""Calls into the service's Ray actors (registry, traffic, monitor) from anywhere: the
ingress replicas, the other actors, the health probes.

Domain errors come back as themselves (Ray re-raises them as subclasses of their own
class, so `isinstance` and the error code hold); an actor that is dead or restarting is
503 `backend_unavailable`, never an internal error.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray

from app.errors import DomainError, ErrorCode, Unavailable

log = logging.getLogger(__name__)

ACTOR_GONE: tuple[type[BaseException], ...] = (
    ray.exceptions.RayActorError,
    ray.exceptions.ActorUnavailableError,
)
_UNANSWERED: tuple[type[BaseException], ...] = (*ACTOR_GONE, TimeoutError)


class ActorClient:
    """One actor's handle, called by method name.

    Args:
        handle: the actor's handle (passed in by the application builder).
        what: how errors name it ("the model registry").
    """

    def __init__(self, handle: Any, what: str) -> None:
        self.handle = handle
        self._what = what

    async def call(self, method: str, *args: Any, timeout_s: float | None = None) -> Any:
        """`handle.<method>.remote(*args)`, awaited.

        Raises:
            DomainError: what the actor raised on purpose.
            Unavailable: the actor is dead, restarting, or did not answer in `timeout_s`.
        """
        try:
            reference = getattr(self.handle, method).remote(*args)
            if timeout_s is None:
                return await reference
            return await asyncio.wait_for(reference, timeout_s)
        except DomainError:
            raise
        except _UNANSWERED as exc:
            log.warning("%s unavailable during %s: %s", self._what, method, type(exc).__name__)
            raise Unavailable(
                ErrorCode.BACKEND_UNAVAILABLE,
                f"{self._what.capitalize()} is restarting; retry shortly.",
            ) from None

    def ping(self, timeout_s: float = 5.0) -> None:
        """Block until the actor answers (for the health probe)."""
        ray.get(self.handle.ping.remote(), timeout=timeout_s)
