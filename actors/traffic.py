"""The traffic actor: every model's routing table, serving stats, feedback, A/B verdicts
and the canary controller.

A plain class; the builder makes it a named, detached Ray actor like the registry.
Routing tables and rollouts are stored on every change and reloaded on start; stats are
merged from the ingress replicas' batches and stored every few seconds. Ingress replicas
long-poll `tables_after` and route locally: no call to this actor per request.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from app.core.abtest import AbTestConfig, Verdict
from app.core.audit import EventType
from app.core.canary import Action, Phase, Rollout, judge_step
from app.core.deployment import DeploymentView, DeploySpec, ServingBatch, plan, step_table
from app.core.feedback import Feedback, PredictionRef, outcome_of
from app.core.gates import Evidence
from app.core.lifecycle import ModelStage
from app.core.routing import RoutingTable
from app.core.serving_evidence import IntegrationRule, ab_evidence, drain, integration, verdicts
from app.core.serving_stats import VariantStats, merge_all
from app.errors import Conflict, ErrorCode, InvalidInput, NotFound
from app.logs import configure_logging
from app.ports import TrafficStore
from app.settings import Settings, settings_fingerprint

log = logging.getLogger(__name__)

_REFS_IN_MEMORY = 100_000
_STALE_INFLIGHT_FACTOR = 5.0


class Traffic:
    """Routing tables, stats, feedback, verdicts and rollouts for every deployed model.

    Args:
        settings: resolved settings.
        store: the state store (built from settings when omitted).
        registry: an object with async `get_model(name)` and `record(...)` (by default the
            registry actor, found by name).
        clock: epoch seconds.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: TrafficStore | None = None,
        registry: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        configure_logging(settings.log_level)
        self._config = settings.serving
        self._fingerprint = settings_fingerprint(settings)
        self._store = store or _default_store(settings)
        self._registry = registry or _RegistryClient(settings)
        self._clock = clock
        state = self._store.load()
        self._tables = dict(state.tables)
        self._rollouts = dict(state.rollouts)
        self._stats = {m: dict(v) for m, v in state.stats.items()}
        self._p_values = dict(state.p_values)
        self._starts = {k: dict(v) for k, v in state.starts.items()}
        self._revision = max((t.revision for t in self._tables.values()), default=0)
        self._epoch = secrets.token_hex(6)
        self._inflight: dict[str, dict[str, dict[str, tuple[int, float]]]] = {}
        self._shadow: dict[str, dict[str, tuple[int, int]]] = {}
        self._refs: OrderedDict[str, PredictionRef] = OrderedDict()
        self._pending = self._store.pending_count()
        self._lock = asyncio.Lock()
        self._changed: asyncio.Event | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._gauges: Any = None
        log.info(
            "traffic loaded: %d routing table(s), %d rollout(s)",
            len(self._tables),
            len(self._rollouts),
        )

    # -- routing tables ---------------------------------------------------------------

    async def tables_after(
        self, epoch: str, revision: int, timeout_s: float = 30.0
    ) -> tuple[str, int, dict[str, RoutingTable]]:
        """Every table, as soon as the revision passes `revision` (or after the timeout).

        `epoch` identifies this incarnation of the actor: a caller that knew another one
        gets the tables at once (revisions start again after a restart).
        """
        self._start()
        assert self._changed is not None
        if epoch == self._epoch and self._revision <= revision:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout_s)
            except TimeoutError:
                pass
        return self._epoch, self._revision, dict(self._tables)

    def view(self, model: str) -> DeploymentView:
        """A model's deployment: table, rollout, stats, verdicts.

        Raises:
            NotFound: the model is not deployed (`not_deployed`).
        """
        table = self._table(model)
        stats = dict(self._stats.get(model, {}))
        now = self._clock()
        return DeploymentView(
            table=table,
            rollout=self._rollouts.get(model),
            stats=stats,
            inflight=self._inflight_of(model, now),
            shadow=dict(self._shadow.get(model, {})),
            verdicts=tuple(self._look(model)),
        )

    async def deploy(self, model: str, spec: DeploySpec, actor: str) -> DeploymentView:
        """Deploy versions of a registered model with a strategy (see `app.core.deployment`).

        Raises:
            NotFound: unknown model or version.
            InvalidInput: an archived version, or an inconsistent request.
            Conflict: a canary is rolling out, or nothing to compare with.
        """
        self._start()
        registered = await self._registry.get_model(model)
        stages = {v.version: v.stage for v in registered.versions}
        for version in spec.versions():
            if version not in stages:
                raise NotFound(
                    ErrorCode.MODEL_VERSION_NOT_FOUND,
                    f"Model {model!r} has no version {version}.",
                    model=model,
                    version=version,
                )
            if stages[version] is ModelStage.ARCHIVED:
                raise InvalidInput.for_field("version", f"version {version} is archived")
        async with self._lock:
            _refuse_during_rollout(self._rollouts.get(model))
            now = datetime.now(UTC)
            stats = self._stats.get(model, {})
            table, rollout = plan(
                model,
                spec,
                self._tables.get(model),
                self._revision + 1,
                now,
                secrets.token_hex(8),
                actor,
                stats,
            )
            start = None
            if table.experiment and (model, table.experiment) not in self._starts:
                # A/B statistics count from the start of the experiment only.
                start = {v.name: stats.get(v.name, VariantStats()) for v in table.variants}
            await asyncio.to_thread(self._store.save_table, table, model, rollout, True, start)
            if start is not None:
                self._starts[(model, table.experiment)] = start
            self._publish(table, rollout, clear_rollout=True)
            if rollout is not None:
                self._control(model)
        payload = {
            "strategy": spec.strategy.value,
            "revision": table.revision,
            "variants": [
                {"name": v.name, "version": v.version, "weight": v.weight, "role": v.role.value}
                for v in table.variants
            ],
            "shadow_percent": table.shadow_percent,
        }
        await self._audit(model, EventType.DEPLOYED, spec.version, payload, actor)
        log.info("%s deployed (%s) by %s: revision %d", model, spec.strategy, actor, table.revision)
        return self.view(model)

    async def undeploy(self, model: str, actor: str) -> None:
        """Remove a model's routing table (and stop its rollout)."""
        async with self._lock:
            self._table(model)
            await asyncio.to_thread(self._store.save_table, None, model, None, True)
            self._tables.pop(model, None)
            self._rollouts.pop(model, None)
            self._revision += 1
            self._notify()
        await self._audit(model, EventType.UNDEPLOYED, None, {}, actor)

    # -- stats, predictions, feedback -------------------------------------------------

    async def record(self, batch: ServingBatch) -> None:
        """Merge one ingress replica's flush: stats, in-flight counts, references, shadows."""
        self._start()
        now = self._clock()
        for model, increments in batch.stats.items():
            self._stats[model] = merge_all(self._stats.get(model, {}), increments)
        for model, counts in batch.inflight.items():
            per_variant = self._inflight.setdefault(model, {})
            for variant, count in counts.items():
                per_variant.setdefault(variant, {})[batch.replica] = (count, now)
        for model, comparisons in batch.shadow.items():
            mine = self._shadow.setdefault(model, {})
            for variant, (compared, agreed) in comparisons.items():
                seen, same = mine.get(variant, (0, 0))
                mine[variant] = (seen + compared, same + agreed)
        if batch.refs:
            await asyncio.to_thread(self._store.add_refs, batch.refs)
            for ref in batch.refs:
                self._remember(ref)
            if self._pending:  # only look for early feedback when some is waiting
                pending = await asyncio.to_thread(
                    self._store.pending_feedback, [r.request_id for r in batch.refs]
                )
                for feedback in pending:
                    await self._join(self._refs[feedback.request_id], feedback, pending=True)

    async def feedback(self, items: list[Feedback]) -> list[str]:
        """Attach ground truth to earlier predictions; per item: recorded, pending (its
        prediction is not known yet) or duplicate."""
        statuses = []
        for item in items:
            exists, _ = await asyncio.to_thread(self._store.feedback_value, item.request_id)
            if exists:
                statuses.append("duplicate")
                continue
            ref = self._refs.get(item.request_id) or await asyncio.to_thread(
                self._store.ref, item.request_id
            )
            if ref is None:
                await asyncio.to_thread(self._store.add_feedback, item, None, self._clock())
                self._pending += 1
                statuses.append("pending")
                continue
            await self._join(ref, item, pending=False)
            statuses.append("recorded")
        return statuses

    # -- evidence for the registry ----------------------------------------------------

    def integration_evidence(self, model: str, version: int) -> Evidence | None:
        """See `ServingEvidence.integration`."""
        rule = IntegrationRule(
            self._config.integration_min_requests, self._config.integration_max_error_rate
        )
        return integration(self._tables.get(model), version, self._stats.get(model, {}), rule)

    def ab_evidence(self, model: str, candidate: int, baseline: int | None) -> Evidence | None:
        """See `ServingEvidence.ab_verdict`."""
        for verdict in self._look(model):
            table = self._tables[model]
            cand, base = table.variant(verdict.candidate), table.variant(verdict.baseline)
            if (
                cand
                and base
                and cand.version == candidate
                and (baseline is None or base.version == baseline)
            ):
                return ab_evidence(verdict)
        return None

    def traffic_evidence(self, model: str, version: int) -> Evidence | None:
        """See `ServingEvidence.traffic`."""
        now = self._clock()
        return drain(
            self._tables.get(model),
            version,
            self._stats.get(model, {}),
            self._inflight_of(model, now),
            now,
            self._config.drain_window_s,
        )

    def ping(self) -> bool:
        """Liveness."""
        return True

    def settings_fingerprint(self) -> str:
        """Which settings this actor runs with (the builder replaces it when they change)."""
        return self._fingerprint

    # -- internals --------------------------------------------------------------------

    def _start(self) -> None:
        """Start the background work on the actor's event loop (first call, and after a
        restart): the stats store loop and the controllers of rollouts in progress."""
        if self._changed is not None:
            return
        self._changed = asyncio.Event()
        self._tasks["__stats__"] = asyncio.ensure_future(self._persist_stats())
        for model, rollout in self._rollouts.items():
            if rollout.phase is Phase.PROGRESSING:
                self._control(model)

    def _control(self, model: str) -> None:
        task = self._tasks.get(model)
        if task is None or task.done():
            self._tasks[model] = asyncio.ensure_future(self._run_canary(model))

    async def _run_canary(self, model: str) -> None:
        while True:
            await asyncio.sleep(self._config.canary_tick_s)
            try:
                if not await self._canary_tick(model):
                    return
            except Exception:
                log.exception("canary controller of %s failed a tick", model)

    async def _canary_tick(self, model: str) -> bool:
        """One look at a rollout; False when it is over."""
        async with self._lock:
            rollout, table = self._rollouts.get(model), self._tables.get(model)
            if rollout is None or table is None or rollout.phase is not Phase.PROGRESSING:
                return False
            stats = self._stats.get(model, {})
            now = self._clock()
            judgement = judge_step(
                rollout.plan,
                stats.get(rollout.baseline, VariantStats()).minus(rollout.baseline_snapshot),
                stats.get(rollout.canary, VariantStats()).minus(rollout.canary_snapshot),
                now - rollout.step_started_at,
            )
            if judgement.action is Action.HOLD:
                return True
            rollout, kind = _next_rollout(rollout, judgement.action, judgement.reason, stats, now)
            table = step_table(table, rollout, self._revision + 1, datetime.now(UTC))
            await asyncio.to_thread(self._store.save_table, table, model, rollout)
            self._publish(table, rollout)
        canary = table.variant(rollout.canary)
        payload = {
            "phase": rollout.phase.value,
            "step": rollout.step_index,
            "weight": rollout.weight,
            "reason": judgement.reason,
            "evidence": judgement.evidence,
        }
        await self._audit(
            model, kind, canary.version if canary else None, payload, "canary-controller"
        )
        log.info("%s canary %s: %s (%s)", model, rollout.canary, kind, judgement.reason)
        if rollout.phase is Phase.COMPLETED and rollout.plan.promote_on_success and canary:
            await self._promote(model, canary.version)
        return rollout.phase is Phase.PROGRESSING

    async def _promote(self, model: str, version: int) -> None:
        try:
            await self._registry.promote(model, version, ModelStage.PRODUCTION, "canary-controller")
        except Exception as exc:
            log.warning(
                "canary of %s completed; promotion of v%s refused: %s",
                model,
                version,
                getattr(exc, "message", type(exc).__name__),
            )

    async def _persist_stats(self) -> None:
        while True:
            await asyncio.sleep(self._config.stats_persist_s)
            try:
                await asyncio.to_thread(self._store.save_stats, dict(self._stats))
            except Exception:
                log.exception("could not store serving stats")
            try:
                self._quality_gauges().publish(self._stats)
            except Exception:
                log.warning("quality gauges not published", exc_info=True)

    def _quality_gauges(self) -> Any:
        if self._gauges is None:
            from app.adapters.serve_metrics import QualityGauges

            self._gauges = QualityGauges()
        return self._gauges

    async def _join(self, ref: PredictionRef, item: Feedback, *, pending: bool) -> None:
        try:
            value = outcome_of(ref, item)
        except InvalidInput as exc:
            log.warning("feedback for %s ignored: %s", item.request_id, exc.message)
            return
        variants = self._stats.setdefault(ref.model, {})
        variants[ref.variant] = variants.get(ref.variant, VariantStats()).with_outcome(value)
        if pending:
            await asyncio.to_thread(self._store.join_feedback, item.request_id, value)
            self._pending = max(0, self._pending - 1)
        else:
            await asyncio.to_thread(self._store.add_feedback, item, value, self._clock())

    def _look(self, model: str) -> list[Verdict]:
        """The A/B verdicts now; each look lowers the stored running p-values."""
        table = self._tables.get(model)
        if table is None:
            return []
        known = {
            c: p for (m, e, c), p in self._p_values.items() if m == model and e == table.experiment
        }
        config = self._config.ab_test
        start = self._starts.get((model, table.experiment), {})
        window = {
            name: value.minus(start[name]) if name in start else value
            for name, value in self._stats.get(model, {}).items()
        }
        found = verdicts(
            table,
            window,
            AbTestConfig(config.alpha, config.tau, config.min_outcomes),
            known,
        )
        for verdict in found:
            key = (model, table.experiment, verdict.candidate)
            if verdict.p_value < self._p_values.get(key, 1.0):
                self._p_values[key] = verdict.p_value
                self._store.save_p_value(key, verdict.p_value)
        return found

    def _publish(
        self, table: RoutingTable, rollout: Rollout | None, clear_rollout: bool = False
    ) -> None:
        self._tables[table.model] = table
        if rollout is not None:
            self._rollouts[table.model] = rollout
        elif clear_rollout:
            self._rollouts.pop(table.model, None)
        self._revision = max(self._revision, table.revision)
        self._notify()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _remember(self, ref: PredictionRef) -> None:
        self._refs[ref.request_id] = ref
        while len(self._refs) > _REFS_IN_MEMORY:
            self._refs.popitem(last=False)

    def _inflight_of(self, model: str, now: float) -> dict[str, int]:
        fresh = _STALE_INFLIGHT_FACTOR * self._config.stats_flush_s
        return {
            variant: sum(n for n, at in replicas.values() if now - at <= fresh)
            for variant, replicas in self._inflight.get(model, {}).items()
        }

    def _table(self, model: str) -> RoutingTable:
        table = self._tables.get(model)
        if table is None:
            raise NotFound(ErrorCode.NOT_DEPLOYED, f"Model {model!r} is not deployed.", model=model)
        return table

    async def _audit(
        self, model: str, kind: EventType, version: int | None, payload: dict[str, Any], actor: str
    ) -> None:
        try:
            await self._registry.record(model, kind, version, payload, actor)
        except Exception:
            log.exception("could not record %s of %s in the audit log", kind, model)


def _next_rollout(
    rollout: Rollout, action: Action, reason: str, stats: dict[str, VariantStats], now: float
) -> tuple[Rollout, EventType]:
    if action is Action.ROLLBACK:
        return replace(rollout, phase=Phase.ROLLED_BACK, reason=reason), (
            EventType.ROLLOUT_ROLLED_BACK
        )
    if rollout.last_step:
        return replace(rollout, phase=Phase.COMPLETED, reason=reason), (EventType.ROLLOUT_COMPLETED)
    return replace(
        rollout,
        step_index=rollout.step_index + 1,
        step_started_at=now,
        baseline_snapshot=stats.get(rollout.baseline, VariantStats()),
        canary_snapshot=stats.get(rollout.canary, VariantStats()),
        reason=reason,
    ), EventType.ROLLOUT_STEP


def _refuse_during_rollout(rollout: Rollout | None) -> None:
    if rollout is not None and rollout.phase is Phase.PROGRESSING:
        raise Conflict(
            ErrorCode.ROLLOUT_IN_PROGRESS,
            f"A canary of {rollout.canary} is rolling out; wait for it or undeploy.",
            model=rollout.model,
            canary=rollout.canary,
        )


class _RegistryClient:
    """The registry actor, found by name (it and this actor refer to each other)."""

    def __init__(self, settings: Settings) -> None:
        from app.adapters.named_actor import NamedActor

        self._actor = NamedActor(settings.registry.actor_name, settings.registry.namespace)

    async def get_model(self, name: str) -> Any:
        return await self._actor.handle().get_model.remote(name)

    async def record(
        self, name: str, kind: EventType, version: int | None, payload: dict[str, Any], actor: str
    ) -> Any:
        return await self._actor.handle().record.remote(name, kind, version, payload, actor)

    async def promote(self, name: str, version: int, target: ModelStage, actor: str) -> Any:
        return await self._actor.handle().promote.remote(name, version, target, actor)


def _default_store(settings: Settings) -> TrafficStore:
    from app.adapters.traffic_store import SqlTrafficStore

    assert settings.state.database_url  # resolved
    return SqlTrafficStore(settings.state.database_url)
