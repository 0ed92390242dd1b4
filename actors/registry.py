"""The model registry actor: one place that serialises every lifecycle change.

A plain class; the builder makes it a named, detached Ray actor that restarts when it
dies and survives redeploys of the Serve application, with its ports built by the
composition root. Its state lives in the service database (every change one
transaction) and is reloaded on start; MLflow aliases and tags mirror the stages and are
reconciled on start too. Reads are served from memory; changes queue behind one lock,
which a promotion's validation task does not hold while it runs. It calls no other
actor: the serving evidence a promotion weighs comes with the request
(`app.core.promotion_evidence`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from app.core.audit import SERVING_EVENTS, AuditEvent, EventType
from app.core.gates import Approval, Check, PromotionFacts, PromotionPolicy, ValidationReport
from app.core.lifecycle import ModelStage, check_transition
from app.core.policy_codec import policy_as_dict
from app.core.promotion_evidence import ServingFacts, checked_facts
from app.core.registry import (
    ModelVersion,
    ModelView,
    PromotionDecision,
    PromotionResult,
    RegisteredModel,
    Registration,
    RegistryWrite,
    aliases,
    check_payload,
    decide_promotion,
    new_version,
    refusal,
    superseded,
)
from app.core.registry_book import RegistryBook, Step
from app.core.semver import ArtifactFacts, next_semver, signature_digest
from app.errors import InvalidInput
from app.jobs.spec import JobEnvironment
from app.ports.registry import ModelCatalog, ModelValidator, RegistryStore
from app.settings import RegistrySettings

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The registry's clock."""
    return datetime.now(UTC)


class Registry:
    """Registered models, versions, stages, approvals, policies and the audit log.

    Args:
        config: the registry's settings (the configured promotion policies).
        store: the durable registry state (the service database).
        catalog: the model registry the stages are mirrored into (MLflow).
        validator: the automated validation of development -> staging.
        jobs: where jobs find the service's stores (`job_environment`).
        clock: the time source.
    """

    def __init__(
        self,
        config: RegistrySettings,
        *,
        store: RegistryStore,
        catalog: ModelCatalog,
        validator: ModelValidator,
        jobs: JobEnvironment,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._config = config
        self._store = store
        self._catalog = catalog
        self._validator = validator
        self._validations: dict[tuple[str, int], asyncio.Future[ValidationReport]] = {}
        self._jobs = jobs
        self._clock = clock
        self._lock = asyncio.Lock()
        self._book = RegistryBook.of(self._store.load())
        for name in self._book.models:
            self._mirror(name)
        log.info("registry loaded: %d model(s)", len(self._book.models))

    # -- reads ------------------------------------------------------------------------

    def list_models(self) -> tuple[ModelView, ...]:
        """Every model, by name."""
        return tuple(self._view(name) for name in sorted(self._book.models))

    def get_model(self, name: str) -> ModelView:
        """One model with its versions, approvals and effective policy.

        Raises:
            NotFound: no such model (`model_not_found`).
        """
        return self._view(name)

    def audit(self, name: str) -> tuple[AuditEvent, ...]:
        """The model's audit log as stored (verification is the caller's)."""
        self._book.model(name)
        return tuple(self._store.events(name))

    def aliases(self, name: str) -> dict[str, int]:
        """The model's aliases as MLflow holds them."""
        self._book.model(name)
        return self._catalog.aliases(name)

    def ping(self) -> bool:
        """Liveness."""
        return True

    def job_environment(self) -> JobEnvironment:
        """Where the service's stores are (jobs ask at start: MLflow, the file storage, the
        feature store)."""
        return self._jobs

    # -- changes ----------------------------------------------------------------------

    async def register(self, request: Registration, actor: str) -> ModelVersion:
        """Register the model a run logged as the next version of `request.model`.

        Raises:
            InvalidInput: the run or its model does not exist (`model_source_not_found`).
            Conflict: the same artifact and metadata is already a version (`duplicate_version`).
        """
        source = await asyncio.to_thread(
            self._catalog.describe, request.run_id, request.artifact_path
        )
        facts = ArtifactFacts(
            signature_digest=signature_digest(source.signature),
            artifact_digest=source.artifact_digest,
            metadata_digest=request.metadata_digest(),
        )
        async with self._lock:
            existing = self._book.versions.get(request.model, {})
            if request.parent_version is not None and request.parent_version not in existing:
                raise InvalidInput.for_field(
                    "parent_version", f"{request.model!r} has no version {request.parent_version}"
                )
            semver = next_semver(request.model, [v.registered() for v in existing.values()], facts)
            number = await asyncio.to_thread(
                self._catalog.create_version,
                request.model,
                source,
                request.description,
                {**request.tags, "mlservice.semver": str(semver)},
            )
            now = self._clock()
            parent = max(existing, default=None)
            version = new_version(request, source, number, semver, facts, parent, actor, now)
            await self._commit_registration(request, version, actor, now)
            return version

    async def promote(
        self,
        name: str,
        number: int,
        target: ModelStage,
        actor: str,
        serving: ServingFacts | None = None,
    ) -> PromotionResult:
        """Move a version to `target` through the gates of that edge.

        Args:
            serving: serving's answers to `evidence_request` for this promotion, asked by
                the caller (None: no serving layer, so no serving evidence).

        Raises:
            NotFound: no such model or version.
            Conflict: not the next stage (`illegal_transition`, also what a losing concurrent
                promotion gets, and a promotion whose serving evidence went stale while it
                was gathered), or a gate failed (`gates_failed`, with every check).
        """
        validation = None
        if target is ModelStage.STAGING:
            async with self._lock:
                check_transition(name, number, self._book.version(name, number).stage, target)
            # outside the lock: a validation that is slow, or waits for a CPU, holds up no
            # other change (a rival promotion that commits first makes this one a Conflict)
            validation = await self._validated(name, number)
        async with self._lock:
            candidate = self._book.version(name, number)
            check_transition(name, number, candidate.stage, target)
            stages = [(v.version, v.stage) for v in self._book.versions_of(name)]
            serving = checked_facts(name, stages, number, target, serving)
            policy = self._policy(name)[0]
            facts = self._facts(name, candidate, target, serving, validation)
            moved_out = (
                superseded(self._book.versions_of(name), candidate, policy, serving.traffic)
                if target is ModelStage.PRODUCTION
                else []
            )
            decision = decide_promotion(name, candidate, target, facts, policy, moved_out)
            now = self._clock()
            if not decision.approved:
                payload = {
                    "target": target.value,
                    "checks": _checks(decision.checks),
                    "artifact_digest": candidate.facts.artifact_digest,
                }
                await self._commit(
                    name, actor, now, [(EventType.PROMOTION_REFUSED, number, payload)]
                )
                raise refusal(name, number, decision)
            moved = await self._commit_promotion(name, decision, policy, actor, now)
            return PromotionResult(moved, decision)

    async def approve(
        self, name: str, number: int, actor: str, comment: str
    ) -> tuple[Approval, bool]:
        """Record `actor`'s approval of a version, bound to its artifact digest; repeating
        an approval returns the first (False)."""
        async with self._lock:
            version = self._book.version(name, number)
            digest = version.facts.artifact_digest
            for earlier in self._book.approvals.get(name, ()):
                if (earlier.version, earlier.digest, earlier.approver) == (number, digest, actor):
                    return earlier, False
            approval = Approval(number, digest, actor, self._clock(), comment)
            payload = {"digest": digest, "comment": comment}
            events = self._book.chain(
                name, actor, approval.at, [(EventType.APPROVAL_RECORDED, number, payload)]
            )
            await self._write(RegistryWrite(approvals=((name, approval),), events=events))
            return approval, True

    async def set_policy(self, name: str, policy: PromotionPolicy | None, actor: str) -> ModelView:
        """Set (or, with None, clear) the model's own promotion policy."""
        async with self._lock:
            model = replace(self._book.model(name), policy=policy)
            payload = {"policy": policy_as_dict(policy) if policy else None}
            now = self._clock()
            events = self._book.chain(name, actor, now, [(EventType.POLICY_CHANGED, None, payload)])
            await self._write(RegistryWrite(model=model, events=events))
            return self._view(name)

    async def record(
        self,
        name: str,
        kind: EventType,
        version: int | None,
        payload: dict[str, Any],
        actor: str,
    ) -> AuditEvent:
        """Append a serving event (deployments, rollouts) to the model's audit log."""
        if kind not in SERVING_EVENTS:
            raise ValueError(f"{kind} is not a serving event")
        async with self._lock:
            self._book.model(name)
            await self._commit(name, actor, self._clock(), [(kind, version, payload)])
            return self._book.tails[name]

    # -- internals --------------------------------------------------------------------

    async def _validated(self, name: str, number: int) -> ValidationReport:
        """The version's validation; concurrent promotions of one version share one task."""
        key = (name, number)
        running = self._validations.get(key)
        if running is None:
            running = asyncio.ensure_future(self._validator.validate(f"models:/{name}/{number}"))
            self._validations[key] = running
            running.add_done_callback(lambda _: self._validations.pop(key, None))
        return await asyncio.shield(running)

    def _facts(
        self,
        name: str,
        candidate: ModelVersion,
        target: ModelStage,
        serving: ServingFacts,
        validation: ValidationReport | None,
    ) -> PromotionFacts:
        production = self._book.production(name, exclude=candidate.version)
        facts = PromotionFacts(
            version=candidate.version,
            digest=candidate.facts.artifact_digest,
            metrics=candidate.metrics,
            production=production,
            evaluation=candidate.lineage.evaluation,
            approvals=tuple(self._book.approvals.get(name, ())),
        )
        if target is ModelStage.STAGING:
            return replace(facts, validation=validation)
        if target is ModelStage.PRODUCTION:
            baseline = production.version if production else None
            return replace(
                facts,
                integration=serving.integration.get(candidate.version),
                ab_test=serving.ab_tests.get((candidate.version, baseline)),
            )
        return replace(facts, traffic=serving.traffic.get(candidate.version))

    async def _commit_registration(
        self, request: Registration, version: ModelVersion, actor: str, now: datetime
    ) -> None:
        name = request.model
        model = self._book.models.get(name)
        steps: list[Step] = []
        if model is None:
            model = RegisteredModel(name, request.description, now, actor)
            steps.append((EventType.MODEL_CREATED, None, {"description": request.description}))
        steps.append(
            (
                EventType.VERSION_REGISTERED,
                version.version,
                {
                    "semver": str(version.semver),
                    "artifact_digest": version.facts.artifact_digest,
                    "signature_digest": version.facts.signature_digest,
                    "lineage": version.lineage.as_dict(),
                },
            )
        )
        events = self._book.chain(name, actor, now, steps)
        try:
            await self._write(RegistryWrite(model=model, versions=(version,), events=events))
        except Exception:
            log.exception(
                "could not record version %s of %s; removing it from MLflow", version.version, name
            )
            await asyncio.to_thread(self._catalog.delete_version, name, version.version)
            raise
        await asyncio.to_thread(self._mirror, name)
        log.info(
            "registered %s version %s (%s) for %s", name, version.version, version.semver, actor
        )

    async def _commit_promotion(
        self,
        name: str,
        decision: PromotionDecision,
        policy: PromotionPolicy,
        actor: str,
        now: datetime,
    ) -> ModelVersion:
        candidate_number = decision.changes[0].version
        moved: list[ModelVersion] = []
        steps: list[Step] = []
        for change in decision.changes:
            version = self._book.version(name, change.version)
            payload: dict[str, Any] = {
                "from": change.source.value,
                "to": change.target.value,
                "reason": change.reason,
                "artifact_digest": version.facts.artifact_digest,
            }
            if change.version == candidate_number:
                payload |= {"checks": _checks(decision.checks), "policy": policy_as_dict(policy)}
            steps.append((EventType.STAGE_CHANGED, change.version, payload))
            moved.append(replace(version, stage=change.target, stage_changed_at=now))
        events = self._book.chain(name, actor, now, steps)
        await self._write(RegistryWrite(versions=tuple(moved), events=events))
        await asyncio.to_thread(self._mirror, name)
        log.info(
            "%s: %s by %s",
            name,
            ", ".join(f"v{c.version} {c.source}->{c.target}" for c in decision.changes),
            actor,
        )
        return moved[0]

    async def _commit(self, name: str, actor: str, now: datetime, steps: list[Step]) -> None:
        await self._write(RegistryWrite(events=self._book.chain(name, actor, now, steps)))

    async def _write(self, change: RegistryWrite) -> None:
        """Store a change, then take it into memory (never the other way round)."""
        await asyncio.to_thread(self._store.write, change)
        self._book = self._book.after(change)

    def _mirror(self, name: str) -> None:
        """Show the stages in MLflow; a failure is logged and repaired at the next change
        or restart (the service database is the source of truth)."""
        versions = self._book.versions_of(name)
        try:
            self._catalog.mirror(
                name,
                {v.version: v.stage.value for v in versions},
                {v.version: str(v.semver) for v in versions},
                aliases(versions),
            )
        except Exception:
            log.exception("could not mirror the stages of %s into MLflow", name)

    def _view(self, name: str) -> ModelView:
        policy, source = self._policy(name)
        return self._book.view(name, policy, source)

    def _policy(self, name: str) -> tuple[PromotionPolicy, str]:
        model = self._book.models.get(name)
        if model is not None and model.policy is not None:
            return model.policy, "api"
        source = "config" if name in self._config.policies else "default"
        return self._config.policy_for(name), source


def _checks(checks: tuple[Check, ...]) -> list[dict[str, Any]]:
    return [check_payload(c) for c in checks]
