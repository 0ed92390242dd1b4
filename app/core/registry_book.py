"""The registry's state as one immutable value: lookups that raise the domain's errors,
the views the API shows, the next links of each model's audit chain, and the state after
a committed write.

The registry actor keeps one `RegistryBook`, builds a `RegistryWrite` from it, stores the
write, and only then moves to `book.after(write)`: memory never runs ahead of the
database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.core.audit import AuditEvent, EventType, next_event
from app.core.gates import Approval, ProductionFacts, PromotionPolicy
from app.core.lifecycle import ModelStage
from app.core.registry import ModelVersion, ModelView, RegisteredModel, RegistryState, RegistryWrite
from app.errors import ErrorCode, NotFound

Step = tuple[EventType, int | None, dict[str, Any]]
"""One audit event to append: its kind, the version it concerns, its payload."""


@dataclass(frozen=True)
class RegistryBook:
    """Every model, version, approval and audit-chain tail, as committed."""

    models: Mapping[str, RegisteredModel] = field(default_factory=dict)
    versions: Mapping[str, Mapping[int, ModelVersion]] = field(default_factory=dict)
    approvals: Mapping[str, tuple[Approval, ...]] = field(default_factory=dict)
    tails: Mapping[str, AuditEvent] = field(default_factory=dict)

    @classmethod
    def of(cls, state: RegistryState) -> RegistryBook:
        """The book of what the database holds."""
        return cls(state.models, state.versions, state.approvals, state.tails)

    def model(self, name: str) -> RegisteredModel:
        """One model. Raises NotFound (`model_not_found`)."""
        model = self.models.get(name)
        if model is None:
            raise NotFound(ErrorCode.MODEL_NOT_FOUND, f"No model named {name!r}.", model=name)
        return model

    def version(self, name: str, number: int) -> ModelVersion:
        """One version. Raises NotFound (`model_not_found`, `model_version_not_found`)."""
        self.model(name)
        version = self.versions.get(name, {}).get(number)
        if version is None:
            raise NotFound(
                ErrorCode.MODEL_VERSION_NOT_FOUND,
                f"Model {name!r} has no version {number}.",
                model=name,
                version=number,
            )
        return version

    def versions_of(self, name: str) -> list[ModelVersion]:
        """A model's versions, by number."""
        return sorted(self.versions.get(name, {}).values(), key=lambda v: v.version)

    def production(self, name: str, exclude: int) -> ProductionFacts | None:
        """The newest production version other than `exclude`, with its metrics."""
        current = [
            v
            for v in self.versions.get(name, {}).values()
            if v.stage is ModelStage.PRODUCTION and v.version != exclude
        ]
        if not current:
            return None
        newest = max(current, key=lambda v: v.version)
        return ProductionFacts(newest.version, newest.metrics)

    def view(self, name: str, policy: PromotionPolicy, source: str) -> ModelView:
        """The model as the API shows it, with its effective policy and where it is from."""
        return ModelView(
            self.model(name),
            tuple(self.versions_of(name)),
            tuple(self.approvals.get(name, ())),
            policy,
            source,
        )

    def chain(
        self, name: str, actor: str, now: datetime, steps: Iterable[Step]
    ) -> tuple[AuditEvent, ...]:
        """The audit events of `steps`, linked to the model's chain."""
        tail = self.tails.get(name)
        events = []
        for kind, version, payload in steps:
            tail = next_event(tail, name, now, actor, kind, version, payload)
            events.append(tail)
        return tuple(events)

    def after(self, write: RegistryWrite) -> RegistryBook:
        """The book once `write` is committed."""
        models = dict(self.models)
        versions = {m: dict(v) for m, v in self.versions.items()}
        approvals = {m: list(a) for m, a in self.approvals.items()}
        tails = dict(self.tails)
        if write.model is not None:
            models[write.model.name] = write.model
        for version in write.versions:
            versions.setdefault(version.model, {})[version.version] = version
        for name, approval in write.approvals:
            approvals.setdefault(name, []).append(approval)
        for event in write.events:
            tails[event.model] = event
        return RegistryBook(models, versions, {m: tuple(a) for m, a in approvals.items()}, tails)
