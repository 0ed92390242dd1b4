"""Deployments as the API offers them: the deploy sequence (the feature contract, the
backends readied before traffic moves, the routing change, and undoing what was started
for a refused deploy), undeploy, the live view and feedback."""

from __future__ import annotations

import asyncio

from app.core.deployment import DeploymentView, DeploySpec
from app.core.feedback import Feedback
from app.core.routing import RoutingTable
from app.errors import DomainError, NotFound
from app.ports.registry import ModelRegistry
from app.ports.serving import ServingControl
from app.services.backends import Backends
from app.services.features import Features


class Deployments:
    """Deploys registered versions with a strategy and a backend each.

    Args:
        registry: the registry (versions and their lineage).
        traffic: the routing tables and live stats (the traffic actor).
        backends: readies Triton and vLLM for the versions that run there.
        features: the feature store (None: not part of this service), whose contract a
            version trained on a feature service must still meet.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        traffic: ServingControl,
        backends: Backends,
        features: Features | None = None,
    ) -> None:
        self._registry = registry
        self._traffic = traffic
        self._backends = backends
        self._features = features

    async def deploy(self, model: str, spec: DeploySpec, actor: str) -> DeploymentView:
        """Check, ready the backends, then move the traffic; on a refusal stop what was
        started for it and keep the rest.

        Raises:
            NotFound: unknown model or version.
            Conflict: a canary is rolling out, nothing to compare with, or a version's
                feature service is gone or changed (`feature_contract_broken`).
            InvalidInput: an inconsistent request, or a version its backend cannot run.
            Unavailable: a backend is not set up or not answering.
        """
        view = await self._registry.get_model(model)  # 404 for an unknown model
        if self._features is not None:
            for version in view.versions:
                service = version.lineage.feature_service
                if version.version in spec.versions() and service:
                    signature = version.lineage.training.get("feature_signature")
                    await asyncio.to_thread(self._features.check_contract, service, signature)
        known = {v.version for v in view.versions}
        if all(v in known for v in spec.versions()):  # else the traffic actor answers 404
            await self._backends.prepare(model, spec)
        try:
            deployed = await self._traffic.deploy(model, spec, actor)
        except DomainError:
            await self._backends.settle(model, await self._current_table(model))
            raise
        await self._backends.settle(model, deployed.table)
        return deployed

    async def undeploy(self, model: str, actor: str) -> None:
        """Remove the model's routing (and its rollout, and its LLM engines)."""
        await self._traffic.undeploy(model, actor)
        await self._backends.settle(model, None)

    async def view(self, model: str) -> DeploymentView:
        """The routing table, live stats per variant, the rollout and A/B verdicts."""
        return await self._traffic.view(model)

    async def feedback(self, items: list[Feedback]) -> list[str]:
        """Attach ground truth to earlier predictions; a status per item."""
        return await self._traffic.feedback(items)

    async def _current_table(self, model: str) -> RoutingTable | None:
        try:
            return (await self._traffic.view(model)).table
        except NotFound:
            return None
