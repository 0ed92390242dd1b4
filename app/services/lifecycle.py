"""Promotions as the API (and the canary controller) ask for them: the serving evidence
the gates weigh is gathered first, then the registry decides; a version promoted to
production then takes the model's traffic (see `app.core.serving_rules`)."""

from __future__ import annotations

import logging

from app.core.deployment import DeploySpec
from app.core.lifecycle import ModelStage
from app.core.promotion_evidence import evidence_request
from app.core.registry import PromotionResult
from app.core.routing import Backend, Strategy
from app.errors import DomainError, NotFound
from app.ports.registry import ModelRegistry, ServingEvidence
from app.ports.serving import ServingControl

log = logging.getLogger(__name__)


class Promotions:
    """Moves versions through the lifecycle's gates.

    Args:
        registry: the registry (decides, records, mirrors into MLflow).
        evidence: serving's integration checks, A/B verdicts and drain states (None: no
            serving layer here, so the gates that need serving evidence block).
        serving: the routing, moved to a version promoted to production (None: no serving
            layer here).
    """

    def __init__(
        self,
        registry: ModelRegistry,
        evidence: ServingEvidence | None,
        serving: ServingControl | None = None,
    ) -> None:
        self._registry = registry
        self._evidence = evidence
        self._serving = serving

    async def promote(
        self, model: str, version: int, target: ModelStage, actor: str
    ) -> PromotionResult:
        """Ask serving what this promotion's gates weigh, then promote through them; a new
        production version becomes the model's primary deployment (the one it replaces
        drains, and the controller archives it once drained).

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
        result = await self._registry.promote(model, version, target, actor, facts)
        if target is ModelStage.PRODUCTION:
            await self._take_traffic(model, version, actor)
        return result

    async def _take_traffic(self, model: str, version: int, actor: str) -> None:
        """Route the model's traffic to its new production version (`replace`, on the
        backend it is deployed on), unless it already answers every request."""
        if self._serving is None:
            return
        try:
            table = (await self._serving.view(model)).table
        except NotFound:
            return  # not deployed: nothing to move
        live = table.serving()
        if [v.version for v in live] == [version]:
            return
        deployed = next((v for v in table.variants if v.version == version), None)
        backend = deployed.backend if deployed is not None else Backend.RAY
        try:
            await self._serving.deploy(model, DeploySpec(Strategy.REPLACE, version, backend), actor)
        except DomainError as exc:  # e.g. a canary rolling out: the promotion stands
            log.warning("%s v%d is production; its traffic did not move: %s", model, version, exc)
