"""The traffic actor: every model's routing table, serving stats, feedback, A/B verdicts
and the canary controller.

A plain class; the builder makes it a named, detached Ray actor like the registry.
Routing tables and rollouts are stored on every change and reloaded on start; stats are
merged from the ingress replicas' batches and stored every few seconds (a restart loses
what came after the last store: a rollout's step then counts from the stored stats, see
`app.core.canary.resumed`). Ingress replicas long-poll `tables_after` and route locally:
no call to this actor per request.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from actors.traffic_stats import TrafficStats
from app.core.audit import EventType
from app.core.canary import (
    Action,
    Phase,
    Rollout,
    advance,
    judge_step,
    refuse_during_rollout,
    resumed,
)
from app.core.deployment import DeploymentView, DeploySpec, ServingBatch, plan, step_table
from app.core.feedback import Feedback
from app.core.lifecycle import ModelStage
from app.core.promotion_evidence import EvidenceRequest, ServingFacts, evidence_request
from app.core.routing import RoutingTable
from app.core.serving_rules import check_stages
from app.core.serving_stats import VariantStats
from app.errors import Conflict, ErrorCode, NotFound
from app.ports.registry import ModelRegistry
from app.ports.serving import QualityGauges, TrafficStore
from app.settings import ServingSettings

log = logging.getLogger(__name__)

LIFECYCLE_CONTROLLER = "lifecycle-controller"  # the actor of the archivals it makes


class Traffic:
    """Routing tables, stats, feedback, verdicts and rollouts for every deployed model.

    Args:
        config: the serving settings (A/B tests, canaries, evidence rules).
        store: the durable serving state (the service database).
        registry: the registry (the registry actor's client): versions and stages, the
            audit log, promotions when a canary completes.
        gauges: quality from feedback as metrics (None: not exported).
        clock: epoch seconds.
    """

    def __init__(
        self,
        config: ServingSettings,
        *,
        store: TrafficStore,
        registry: ModelRegistry,
        gauges: QualityGauges | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._store = store
        self._registry = registry
        self._clock = clock
        state = self._store.load()
        self._tables = dict(state.tables)
        self._rollouts = {
            model: resumed(rollout, state.stats.get(model, {}))
            for model, rollout in state.rollouts.items()
        }
        for model, rollout in self._rollouts.items():
            if rollout != state.rollouts[model]:
                log.warning(
                    "%s: the serving stats stored last were behind its rollout's step (lost "
                    "in a restart); the step's window counts from the stored stats",
                    model,
                )
        self._stats = TrafficStats(config, store, state, clock, gauges)
        self._revision = max((t.revision for t in self._tables.values()), default=0)
        self._epoch = secrets.token_hex(6)
        self._lock = asyncio.Lock()
        self._changed: asyncio.Event | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
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
        return DeploymentView(
            table=table,
            rollout=self._rollouts.get(model),
            stats=self._stats.of(model),
            inflight=self._stats.inflight(model),
            shadow=self._stats.shadow(model),
            verdicts=tuple(self._stats.verdicts(table)),
        )

    async def deploy(self, model: str, spec: DeploySpec, actor: str) -> DeploymentView:
        """Deploy versions of a registered model with a strategy (see `app.core.deployment`).

        Raises:
            NotFound: unknown model or version.
            InvalidInput: an archived version, or an inconsistent request.
            Conflict: a canary is rolling out, nothing to compare with, or a development
                version for live traffic (`stage_not_allowed`, see `serving_rules`).
        """
        self._start()
        registered = await self._registry.get_model(model)
        check_stages(model, spec, {v.version: v.stage for v in registered.versions})
        async with self._lock:
            refuse_during_rollout(self._rollouts.get(model))
            table, rollout = plan(
                model,
                spec,
                self._tables.get(model),
                self._revision + 1,
                datetime.now(UTC),
                secrets.token_hex(8),
                actor,
                self._stats.of(model),
            )
            start = self._stats.experiment_start(table)  # A/B stats count from here on
            await asyncio.to_thread(self._store.save_table, table, model, rollout, True, start)
            if start is not None:
                self._stats.started(table, start)
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
        await self._stats.record(batch)

    async def feedback(self, items: list[Feedback]) -> list[str]:
        """Attach ground truth to earlier predictions; per item: recorded, pending (its
        prediction is not known yet) or duplicate."""
        return await self._stats.feedback(items)

    def serving_facts(self, model: str, request: EvidenceRequest) -> ServingFacts:
        """See `ServingEvidence.facts`: integration checks, A/B verdicts and drain states."""
        table = self._tables.get(model)
        return ServingFacts(
            request,
            {v: self._stats.integration(table, v) for v in request.integration},
            {(c, b): self._stats.ab(table, c, b) for c, b in request.ab_tests},
            {v: self._stats.drained(model, table, v) for v in request.traffic},
        )

    def ping(self) -> bool:
        """Liveness."""
        return True

    # -- internals --------------------------------------------------------------------

    def _start(self) -> None:
        """Start the background work on the actor's event loop (first call, and after a
        restart): the stats store loop and the controllers of rollouts in progress."""
        if self._changed is not None:
            return
        self._changed = asyncio.Event()
        self._tasks["__stats__"] = asyncio.ensure_future(self._stats.persist())
        self._tasks["__lifecycle__"] = asyncio.ensure_future(self._run_lifecycle())
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
            stats = self._stats.of(model)
            now = self._clock()
            baseline = stats.get(rollout.baseline, VariantStats())
            judgement = judge_step(
                rollout.plan,
                baseline.minus(rollout.baseline_snapshot),
                stats.get(rollout.canary, VariantStats()).minus(rollout.canary_snapshot),
                now - rollout.step_started_at,
                self._config.canary.alpha,
                baseline_history=baseline,  # everything it served (the last step: nothing new)
            )
            if judgement.action is Action.HOLD:
                return True
            rollout, kind = advance(rollout, judgement.action, judgement.reason, stats, now)
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

    async def _run_lifecycle(self) -> None:
        """The lifecycle controller: production versions that a newer one superseded are
        archived once drained (see `app.core.serving_rules`)."""
        while True:
            await asyncio.sleep(self._config.lifecycle_tick_s)
            for model in list(self._tables):
                try:
                    await self._archive_superseded(model)
                except Exception:
                    log.exception("lifecycle controller of %s failed a tick", model)

    async def _archive_superseded(self, model: str) -> None:
        view = await self._registry.get_model(model)
        stages = [(v.version, v.stage) for v in view.versions]
        production = sorted(v for v, stage in stages if stage is ModelStage.PRODUCTION)
        for old in production[:-1]:
            request = evidence_request(stages, old, ModelStage.ARCHIVED)
            facts = self.serving_facts(model, request)
            drained = facts.traffic.get(old)
            if drained is not None and not drained.passed:
                continue  # still serving: next tick
            try:
                await self._registry.promote(
                    model, old, ModelStage.ARCHIVED, LIFECYCLE_CONTROLLER, facts
                )
                log.info(
                    "%s v%d archived: superseded by v%d and drained", model, old, production[-1]
                )
            except Conflict as exc:
                log.warning("%s v%d not archived: %s", model, old, exc.message)

    async def _promote(self, model: str, version: int) -> None:
        try:
            view = await self._registry.get_model(model)
            stages = [(v.version, v.stage) for v in view.versions]
            request = evidence_request(stages, version, ModelStage.PRODUCTION)
            facts = self.serving_facts(model, request)
            await self._registry.promote(
                model, version, ModelStage.PRODUCTION, "canary-controller", facts
            )
        except Exception as exc:
            log.warning(
                "canary of %s completed; promotion of v%s refused: %s",
                model,
                version,
                getattr(exc, "message", type(exc).__name__),
            )

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
