"""The model registry actor: one place that serialises every lifecycle change.

A plain class; the builder makes it a named, detached Ray actor that restarts when it
dies and survives redeploys of the Serve application. Its state lives in the service
database (every change one transaction) and is reloaded on start; MLflow aliases and tags
mirror the stages and are reconciled on start too. Reads are served from memory while a
promotion waits for its validation task; changes queue behind one lock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from app.core.audit import SERVING_EVENTS, AuditEvent, EventType, next_event
from app.core.gates import (
    Approval,
    Check,
    ProductionFacts,
    PromotionFacts,
    PromotionPolicy,
    evaluate,
)
from app.core.lifecycle import ModelStage, check_transition
from app.core.policy_codec import policy_as_dict
from app.core.registry import (
    Lineage,
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
    refusal,
)
from app.core.semver import ArtifactFacts, next_semver
from app.errors import ErrorCode, InvalidInput, NotFound
from app.logs import configure_logging
from app.ports import ModelCatalog, ModelValidator, RegistryStore, ServingEvidence
from app.settings import Settings, settings_fingerprint

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The registry's clock."""
    return datetime.now(UTC)


class Registry:
    """Registered models, versions, stages, approvals, policies and the audit log.

    Args:
        settings: resolved settings.
        store, catalog, validator, evidence: the ports; built from settings when omitted
            (tests inject their own).
        clock: the time source.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: RegistryStore | None = None,
        catalog: ModelCatalog | None = None,
        validator: ModelValidator | None = None,
        evidence: ServingEvidence | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        configure_logging(settings.log_level)
        self._config = settings.registry
        assert settings.mlflow.tracking_uri and settings.mlflow.artifact_root  # resolved
        self._tracking_uri = settings.mlflow.tracking_uri
        self._artifact_root = settings.mlflow.artifact_root
        self._features = (
            str(settings.features.repo_dir),
            str(settings.data_dir / "feast"),
            settings.features.config_file,
        )
        self._fingerprint = settings_fingerprint(settings)
        self._store = store or _default_store(settings)
        self._catalog = catalog or _default_catalog(settings)
        self._validator = validator or _default_validator(settings)
        self._evidence = evidence or _default_evidence(settings)
        self._clock = clock
        self._lock = asyncio.Lock()
        state = self._store.load()
        self._models = dict(state.models)
        self._versions = {m: dict(v) for m, v in state.versions.items()}
        self._approvals = {m: list(a) for m, a in state.approvals.items()}
        self._tails = dict(state.tails)
        for name in self._models:
            self._mirror(name)
        log.info("registry loaded: %d model(s)", len(self._models))

    # -- reads ------------------------------------------------------------------------

    def settings_fingerprint(self) -> str:
        """Which settings this actor runs with (the builder replaces it when they change)."""
        return self._fingerprint

    def list_models(self) -> tuple[ModelView, ...]:
        """Every model, by name."""
        return tuple(self._view(name) for name in sorted(self._models))

    def get_model(self, name: str) -> ModelView:
        """One model with its versions, approvals and effective policy.

        Raises:
            NotFound: no such model (`model_not_found`).
        """
        self._model(name)
        return self._view(name)

    def audit(self, name: str) -> tuple[AuditEvent, ...]:
        """The model's audit log as stored (verification is the caller's)."""
        self._model(name)
        return tuple(self._store.events(name))

    def aliases(self, name: str) -> dict[str, int]:
        """The model's aliases as MLflow holds them."""
        self._model(name)
        return self._catalog.aliases(name)

    def ping(self) -> bool:
        """Liveness."""
        return True

    def tracking(self) -> tuple[str, str]:
        """The MLflow tracking URI and artifact root the service uses (jobs ask for them)."""
        return self._tracking_uri, self._artifact_root

    def feature_store(self) -> tuple[str, str, str]:
        """The Feast repository, its data directory and config file (jobs build training
        sets from feature services with them)."""
        return self._features

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
            signature_digest=_signature_digest(source.signature),
            artifact_digest=source.artifact_digest,
            metadata_digest=request.metadata_digest(),
        )
        async with self._lock:
            existing = self._versions.get(request.model, {})
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
            lineage = Lineage(
                run_id=source.run_id,
                experiment_id=source.experiment_id,
                datasets=source.datasets,
                feature_service=source.feature_service,
                code_version=source.code_version,
                parent_version=request.parent_version or max(existing, default=None),
                artifact_digest=source.artifact_digest,
                source_uri=source.uri,
                parent_run_id=source.parent_run_id,
                training=dict(request.provenance),
            )
            version = ModelVersion(
                model=request.model,
                version=number,
                semver=semver,
                stage=ModelStage.DEVELOPMENT,
                facts=facts,
                metrics=dict(source.metrics),
                lineage=lineage,
                description=request.description,
                tags=dict(request.tags),
                registered_at=now,
                registered_by=actor,
                stage_changed_at=now,
            )
            await self._commit_registration(request, version, actor, now)
            return version

    async def promote(
        self, name: str, number: int, target: ModelStage, actor: str
    ) -> PromotionResult:
        """Move a version to `target` through the gates of that edge.

        Raises:
            NotFound: no such model or version.
            Conflict: not the next stage (`illegal_transition`, also what a losing concurrent
                promotion gets), or a gate failed (`gates_failed`, with every check).
        """
        async with self._lock:
            candidate = self._version(name, number)
            check_transition(name, number, candidate.stage, target)
            policy = self._policy(name)[0]
            facts = await self._facts(name, candidate, target)
            superseded = await self._superseded(name, candidate, target, policy)
            decision = decide_promotion(name, candidate, target, facts, policy, superseded)
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
            version = self._version(name, number)
            digest = version.facts.artifact_digest
            for earlier in self._approvals.get(name, []):
                if (earlier.version, earlier.digest, earlier.approver) == (number, digest, actor):
                    return earlier, False
            approval = Approval(number, digest, actor, self._clock(), comment)
            payload = {"digest": digest, "comment": comment}
            events = self._events(
                name, actor, approval.at, [(EventType.APPROVAL_RECORDED, number, payload)]
            )
            await asyncio.to_thread(
                self._store.write, RegistryWrite(approvals=((name, approval),), events=events)
            )
            self._approvals.setdefault(name, []).append(approval)
            self._tails[name] = events[-1]
            return approval, True

    async def set_policy(self, name: str, policy: PromotionPolicy | None, actor: str) -> ModelView:
        """Set (or, with None, clear) the model's own promotion policy."""
        async with self._lock:
            model = replace(self._model(name), policy=policy)
            payload = {"policy": policy_as_dict(policy) if policy else None}
            now = self._clock()
            events = self._events(name, actor, now, [(EventType.POLICY_CHANGED, None, payload)])
            await asyncio.to_thread(self._store.write, RegistryWrite(model=model, events=events))
            self._models[name] = model
            self._tails[name] = events[-1]
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
            self._model(name)
            now = self._clock()
            await self._commit(name, actor, now, [(kind, version, payload)])
            return self._tails[name]

    # -- internals --------------------------------------------------------------------

    async def _facts(
        self, name: str, candidate: ModelVersion, target: ModelStage
    ) -> PromotionFacts:
        production = self._production(name, exclude=candidate.version)
        facts = PromotionFacts(
            version=candidate.version,
            digest=candidate.facts.artifact_digest,
            metrics=candidate.metrics,
            production=production,
            approvals=tuple(self._approvals.get(name, ())),
        )
        if target is ModelStage.STAGING:
            report = await self._validator.validate(f"models:/{name}/{candidate.version}")
            return replace(facts, validation=report)
        if target is ModelStage.PRODUCTION:
            baseline = production.version if production else None
            return replace(
                facts,
                integration=await self._evidence.integration(name, candidate.version),
                ab_test=await self._evidence.ab_verdict(name, candidate.version, baseline),
            )
        return replace(facts, traffic=await self._evidence.traffic(name, candidate.version))

    async def _superseded(
        self, name: str, candidate: ModelVersion, target: ModelStage, policy: PromotionPolicy
    ) -> list[tuple[ModelVersion, tuple[Check, ...]]]:
        if target is not ModelStage.PRODUCTION:
            return []
        newcomer = ProductionFacts(candidate.version, candidate.metrics)
        out = []
        for old in self._versions[name].values():
            if old.stage is ModelStage.PRODUCTION and old.version != candidate.version:
                facts = PromotionFacts(
                    old.version,
                    old.facts.artifact_digest,
                    old.metrics,
                    production=newcomer,
                    traffic=await self._evidence.traffic(name, old.version),
                )
                out.append((old, evaluate(ModelStage.ARCHIVED, facts, policy)))
        return out

    async def _commit_registration(
        self, request: Registration, version: ModelVersion, actor: str, now: datetime
    ) -> None:
        name = request.model
        model = self._models.get(name)
        steps: list[tuple[EventType, int | None, dict[str, Any]]] = []
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
        events = self._events(name, actor, now, steps)
        change = RegistryWrite(model=model, versions=(version,), events=events)
        try:
            await asyncio.to_thread(self._store.write, change)
        except Exception:
            log.exception(
                "could not record version %s of %s; removing it from MLflow", version.version, name
            )
            await asyncio.to_thread(self._catalog.delete_version, name, version.version)
            raise
        self._models[name] = model
        self._versions.setdefault(name, {})[version.version] = version
        self._tails[name] = events[-1]
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
        steps: list[tuple[EventType, int | None, dict[str, Any]]] = []
        for change in decision.changes:
            version = self._versions[name][change.version]
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
        events = self._events(name, actor, now, steps)
        await asyncio.to_thread(
            self._store.write, RegistryWrite(versions=tuple(moved), events=events)
        )
        for version in moved:
            self._versions[name][version.version] = version
        self._tails[name] = events[-1]
        await asyncio.to_thread(self._mirror, name)
        log.info(
            "%s: %s by %s",
            name,
            ", ".join(f"v{c.version} {c.source}->{c.target}" for c in decision.changes),
            actor,
        )
        return moved[0]

    async def _commit(
        self,
        name: str,
        actor: str,
        now: datetime,
        steps: list[tuple[EventType, int | None, dict[str, Any]]],
    ) -> None:
        events = self._events(name, actor, now, steps)
        await asyncio.to_thread(self._store.write, RegistryWrite(events=events))
        self._tails[name] = events[-1]

    def _events(
        self,
        name: str,
        actor: str,
        now: datetime,
        steps: list[tuple[EventType, int | None, dict[str, Any]]],
    ) -> tuple[AuditEvent, ...]:
        tail = self._tails.get(name)
        events = []
        for kind, version, payload in steps:
            tail = next_event(tail, name, now, actor, kind, version, payload)
            events.append(tail)
        return tuple(events)

    def _mirror(self, name: str) -> None:
        """Show the stages in MLflow; a failure is logged and repaired at the next change
        or restart (the service database is the source of truth)."""
        versions = list(self._versions.get(name, {}).values())
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
        versions = tuple(sorted(self._versions.get(name, {}).values(), key=lambda v: v.version))
        return ModelView(
            self._models[name], versions, tuple(self._approvals.get(name, ())), policy, source
        )

    def _policy(self, name: str) -> tuple[PromotionPolicy, str]:
        model = self._models.get(name)
        if model is not None and model.policy is not None:
            return model.policy, "api"
        source = "config" if name in self._config.policies else "default"
        return self._config.policy_for(name), source

    def _production(self, name: str, exclude: int) -> ProductionFacts | None:
        current = [
            v
            for v in self._versions.get(name, {}).values()
            if v.stage is ModelStage.PRODUCTION and v.version != exclude
        ]
        if not current:
            return None
        newest = max(current, key=lambda v: v.version)
        return ProductionFacts(newest.version, newest.metrics)

    def _model(self, name: str) -> RegisteredModel:
        model = self._models.get(name)
        if model is None:
            raise NotFound(ErrorCode.MODEL_NOT_FOUND, f"No model named {name!r}.", model=name)
        return model

    def _version(self, name: str, number: int) -> ModelVersion:
        self._model(name)
        version = self._versions.get(name, {}).get(number)
        if version is None:
            raise NotFound(
                ErrorCode.MODEL_VERSION_NOT_FOUND,
                f"Model {name!r} has no version {number}.",
                model=name,
                version=number,
            )
        return version


def _checks(checks: tuple[Check, ...]) -> list[dict[str, Any]]:
    return [check_payload(c) for c in checks]


def _signature_digest(signature: Mapping[str, Any] | None) -> str:
    from app.adapters.mlflow_registry import signature_digest

    return signature_digest(signature)


def _default_store(settings: Settings) -> RegistryStore:
    from app.adapters.registry_store import SqlRegistryStore

    assert settings.state.database_url  # resolved
    return SqlRegistryStore(settings.state.database_url)


def _default_catalog(settings: Settings) -> ModelCatalog:
    from app.adapters.mlflow_registry import MlflowModelCatalog

    assert settings.mlflow.tracking_uri  # resolved
    return MlflowModelCatalog(settings.mlflow.tracking_uri)


def _default_validator(settings: Settings) -> ModelValidator:
    from app.adapters.model_validation import RayModelValidator

    assert settings.mlflow.tracking_uri  # resolved
    return RayModelValidator(
        settings.mlflow.tracking_uri,
        settings.registry.validation_num_cpus,
        settings.registry.validation_timeout_s,
    )


def _default_evidence(settings: Settings) -> ServingEvidence:
    from app.adapters.named_actor import NamedActor
    from app.adapters.serving_evidence import TrafficServingEvidence

    traffic = NamedActor(settings.serving.traffic_actor_name, settings.registry.namespace)
    return TrafficServingEvidence(traffic)
