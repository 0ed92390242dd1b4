"""`ModelRegistry` over the registry actor's Ray handle."""

from __future__ import annotations

from typing import Any

from app.adapters.actor_client import ActorClient
from app.core.audit import AuditEvent, EventType
from app.core.gates import Approval, PromotionPolicy
from app.core.lifecycle import ModelStage
from app.core.promotion_evidence import ServingFacts
from app.core.registry import ModelVersion, ModelView, PromotionResult, Registration


class ActorModelRegistry:
    """Calls the registry actor (see `ActorClient` for its errors).

    Args:
        handle: the registry actor's handle (passed in by the application builder).
    """

    def __init__(self, handle: Any) -> None:
        self._actor = ActorClient(handle, "the model registry")

    async def list_models(self) -> tuple[ModelView, ...]:
        """See `ModelRegistry.list_models`."""
        result: tuple[ModelView, ...] = await self._actor.call("list_models")
        return result

    async def get_model(self, name: str) -> ModelView:
        """See `ModelRegistry.get_model`."""
        result: ModelView = await self._actor.call("get_model", name)
        return result

    async def audit(self, name: str) -> tuple[AuditEvent, ...]:
        """See `ModelRegistry.audit`."""
        result: tuple[AuditEvent, ...] = await self._actor.call("audit", name)
        return result

    async def register(self, request: Registration, actor: str) -> ModelVersion:
        """See `ModelRegistry.register`."""
        result: ModelVersion = await self._actor.call("register", request, actor)
        return result

    async def promote(
        self,
        name: str,
        version: int,
        target: ModelStage,
        actor: str,
        serving: ServingFacts | None = None,
    ) -> PromotionResult:
        """See `ModelRegistry.promote`."""
        result: PromotionResult = await self._actor.call(
            "promote", name, version, target, actor, serving
        )
        return result

    async def approve(
        self, name: str, version: int, actor: str, comment: str
    ) -> tuple[Approval, bool]:
        """See `ModelRegistry.approve`."""
        result: tuple[Approval, bool] = await self._actor.call(
            "approve", name, version, actor, comment
        )
        return result

    async def set_policy(self, name: str, policy: PromotionPolicy | None, actor: str) -> ModelView:
        """See `ModelRegistry.set_policy`."""
        result: ModelView = await self._actor.call("set_policy", name, policy, actor)
        return result

    async def record(
        self,
        name: str,
        kind: EventType,
        version: int | None,
        payload: dict[str, Any],
        actor: str,
    ) -> AuditEvent:
        """See `ModelRegistry.record`."""
        result: AuditEvent = await self._actor.call("record", name, kind, version, payload, actor)
        return result

    def ping(self, timeout_s: float = 5.0) -> None:
        """Block until the actor answers (for the health probe)."""
        self._actor.ping(timeout_s)
