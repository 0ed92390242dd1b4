"""The model registry: versions in a catalog (MLflow), their validation, durable state,
the registry as the API uses it, and the serving evidence its gates weigh."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from app.core.audit import AuditEvent, EventType
from app.core.gates import Approval, PromotionPolicy, ValidationReport
from app.core.lifecycle import ModelStage
from app.core.promotion_evidence import EvidenceRequest, ServingFacts
from app.core.registry import (
    ModelSource,
    ModelVersion,
    ModelView,
    PromotionResult,
    Registration,
    RegistryState,
    RegistryWrite,
)
from app.core.signature import Signature


class ModelCatalog(Protocol):
    """Model versions in a model registry, and the stages mirrored onto them."""

    def describe(self, run_id: str, artifact_path: str) -> ModelSource:
        """Resolve the model a run logged: its URI, signature, digest, metrics and lineage.

        Raises:
            InvalidInput: no such run, or the run logged no model at `artifact_path`
                (`model_source_not_found`).
        """
        ...

    def create_version(
        self, name: str, source: ModelSource, description: str, tags: Mapping[str, str]
    ) -> int:
        """Register `source` as a new version of model `name` (created if new); its number."""
        ...

    def delete_version(self, name: str, version: int) -> None:
        """Remove a version (to undo a registration that could not be recorded)."""
        ...

    def mirror(
        self,
        name: str,
        stages: Mapping[int, str],
        semvers: Mapping[int, str],
        aliases: Mapping[str, int],
    ) -> None:
        """Make the registry show the service's stages: a stage and semver tag on each given
        version, and exactly the given stage aliases (others of the service removed)."""
        ...

    def aliases(self, name: str) -> dict[str, int]:
        """The model's aliases as the registry holds them."""
        ...


class ModelValidator(Protocol):
    """Automated validation of a registered model version."""

    async def validate(self, model_uri: str) -> ValidationReport:
        """Load the model, predict on its input example, check the output against its
        signature; never raises for a bad model, reports the failing step instead.

        Raises:
            Unavailable: the validation could not run (no CPU for it in time): not the
                version's failure, so nothing is recorded against it.
        """
        ...


class ServingEvidence(Protocol):
    """What serving knows about a model's versions: live checks, A/B verdicts, draining."""

    async def facts(self, model: str, request: EvidenceRequest) -> ServingFacts | None:
        """Serving's answers to `request` (see `app.core.promotion_evidence`); None when
        serving cannot be asked now (the gates that need it then block)."""
        ...


class RegistryStore(Protocol):
    """Durable registry state."""

    def load(self) -> RegistryState:
        """Everything, as of now."""
        ...

    def write(self, change: RegistryWrite) -> None:
        """Apply one change atomically."""
        ...

    def events(self, model: str) -> list[AuditEvent]:
        """A model's audit log, in order."""
        ...


class ModelRegistry(Protocol):
    """The model registry as the API uses it (the registry actor, over Ray)."""

    async def list_models(self) -> tuple[ModelView, ...]:
        """Every model, by name."""
        ...

    async def get_model(self, name: str) -> ModelView:
        """One model. Raises NotFound (`model_not_found`)."""
        ...

    async def audit(self, name: str) -> tuple[AuditEvent, ...]:
        """The model's audit log. Raises NotFound (`model_not_found`)."""
        ...

    async def register(self, request: Registration, actor: str) -> ModelVersion:
        """Register a run's model as a new version (see `Registry.register`)."""
        ...

    async def promote(
        self,
        name: str,
        version: int,
        target: ModelStage,
        actor: str,
        serving: ServingFacts | None = None,
    ) -> PromotionResult:
        """Move a version through the gates of the edge, weighing serving's answers to
        its `evidence_request` (see `Registry.promote`)."""
        ...

    async def approve(
        self, name: str, version: int, actor: str, comment: str
    ) -> tuple[Approval, bool]:
        """Record an approval bound to the version's digest (see `Registry.approve`)."""
        ...

    async def set_policy(self, name: str, policy: PromotionPolicy | None, actor: str) -> ModelView:
        """Set or clear a model's own policy (see `Registry.set_policy`)."""
        ...

    async def record(
        self,
        name: str,
        kind: EventType,
        version: int | None,
        payload: dict[str, Any],
        actor: str,
    ) -> AuditEvent:
        """Append a serving event (deployments, rollouts) to the model's audit log."""
        ...


class ModelSignatures(Protocol):
    """The input signatures of registered versions (MLflow's model metadata)."""

    def signature(self, model: str, version: int) -> Signature | None:
        """The version's inputs, outputs and input example (None: logged without a
        signature).

        Raises:
            NotFound: no such version (`model_version_not_found`).
            Unavailable: the model store cannot be reached.
        """
        ...
