"""`ModelRegistry` over the registry actor's Ray handle."""

from __future__ import annotations

import logging
from typing import Any

import ray

from app.core.audit import AuditEvent
from app.core.gates import Approval, PromotionPolicy
from app.core.lifecycle import ModelStage
from app.core.registry import ModelVersion, ModelView, PromotionResult, Registration
from app.errors import DomainError, ErrorCode, Unavailable

log = logging.getLogger(__name__)


class ActorModelRegistry:
    """Calls the registry actor; domain errors come back as themselves (Ray re-raises them
    as subclasses of their own class), a dead or restarting actor as 503.

    Args:
        handle: the registry actor's handle (passed in by the application builder).
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    async def list_models(self) -> tuple[ModelView, ...]:
        """See `ModelRegistry.list_models`."""
        result: tuple[ModelView, ...] = await self._call("list_models")
        return result

    async def get_model(self, name: str) -> ModelView:
        """See `ModelRegistry.get_model`."""
        result: ModelView = await self._call("get_model", name)
        return result

    async def audit(self, name: str) -> tuple[AuditEvent, ...]:
        """See `ModelRegistry.audit`."""
        result: tuple[AuditEvent, ...] = await self._call("audit", name)
        return result

    async def register(self, request: Registration, actor: str) -> ModelVersion:
        """See `ModelRegistry.register`."""
        result: ModelVersion = await self._call("register", request, actor)
        return result

    async def promote(
        self, name: str, version: int, target: ModelStage, actor: str
    ) -> PromotionResult:
        """See `ModelRegistry.promote`."""
        result: PromotionResult = await self._call("promote", name, version, target, actor)
        return result

    async def approve(
        self, name: str, version: int, actor: str, comment: str
    ) -> tuple[Approval, bool]:
        """See `ModelRegistry.approve`."""
        result: tuple[Approval, bool] = await self._call("approve", name, version, actor, comment)
        return result

    async def set_policy(self, name: str, policy: PromotionPolicy | None, actor: str) -> ModelView:
        """See `ModelRegistry.set_policy`."""
        result: ModelView = await self._call("set_policy", name, policy, actor)
        return result

    def ping(self, timeout_s: float = 5.0) -> None:
        """Block until the actor answers (for the health probe)."""
        ray.get(self._handle.ping.remote(), timeout=timeout_s)

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await getattr(self._handle, method).remote(*args)
        except DomainError:
            raise
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
            log.warning("registry actor unavailable during %s: %s", method, type(exc).__name__)
            raise Unavailable(
                ErrorCode.BACKEND_UNAVAILABLE,
                "The model registry is restarting; retry shortly.",
            ) from None
