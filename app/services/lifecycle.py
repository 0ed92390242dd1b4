"""Promotions as the API (and the canary controller) ask for them: the serving evidence
the gates weigh is gathered first, then the registry decides."""

from __future__ import annotations

from app.core.lifecycle import ModelStage
from app.core.promotion_evidence import evidence_request
from app.core.registry import PromotionResult
from app.ports.registry import ModelRegistry, ServingEvidence


class Promotions:
    """Moves versions through the lifecycle's gates.

    Args:
        registry: the registry (decides, records, mirrors into MLflow).
        evidence: serving's integration checks, A/B verdicts and drain states (None: no
            serving layer here, so the gates that need serving evidence block).
    """

    def __init__(self, registry: ModelRegistry, evidence: ServingEvidence | None) -> None:
        self._registry = registry
        self._evidence = evidence

    async def promote(
        self, model: str, version: int, target: ModelStage, actor: str
    ) -> PromotionResult:
        """Ask serving what this promotion's gates weigh, then promote through them.

        Raises:
            NotFound: no such model or version.
            Conflict: not the next stage, a concurrent change, or a gate failed
                (`gates_failed`, with every check).
        """
        view = await self._registry.get_model(model)
        stages = [(v.version, v.stage) for v in view.versions]
        request = evidence_request(stages, version, target)
        facts = None
        if self._evidence is not None and not request.empty:
            facts = await self._evidence.facts(model, request)
        return await self._registry.promote(model, version, target, actor, facts)
