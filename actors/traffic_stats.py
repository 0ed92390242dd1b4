"""What happened on the traffic: the traffic actor's serving statistics, in-flight counts,
shadow agreement, prediction references, feedback and A/B verdicts.

A plain class the traffic actor holds (it runs on the actor's event loop). Stats are
merged from the ingress replicas' batches and stored every few seconds; references and
feedback are stored as they come; running p-values only ever go down and are stored.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping

from app.core.abtest import AbTestConfig, Verdict
from app.core.deployment import ServingBatch
from app.core.feedback import Feedback, FeedbackRules, PredictionRef, outcome_of
from app.core.gates import Evidence
from app.core.routing import RoutingTable
from app.core.serving_evidence import IntegrationRule, ab_evidence, drain, integration, verdicts
from app.core.serving_stats import VariantStats, merge_all, no_later_than
from app.errors import ErrorCode, FieldError, InvalidInput
from app.ports.serving import QualityGauges, TrafficState, TrafficStore
from app.settings import ServingSettings

log = logging.getLogger(__name__)

_REFS_IN_MEMORY = 100_000
_STALE_INFLIGHT_FACTOR = 5.0


class TrafficStats:
    """Per model and variant: cumulative stats, what is in flight, shadow agreement; the
    references feedback joins, and the A/B tests' running p-values.

    Args:
        config: the serving settings (A/B test, evidence rules, flush periods).
        store: the durable serving state.
        state: what the store held at start.
        clock: epoch seconds.
        gauges: quality from feedback as metrics (None: not exported).
    """

    def __init__(
        self,
        config: ServingSettings,
        store: TrafficStore,
        state: TrafficState,
        clock: Callable[[], float],
        gauges: QualityGauges | None = None,
    ) -> None:
        self._config = config
        self._rules = FeedbackRules(
            config.feedback.binary_threshold, config.feedback.regression_metric
        )
        self._store = store
        self._clock = clock
        self._gauges = gauges
        self._stats = {m: dict(v) for m, v in state.stats.items()}
        self._p_values = dict(state.p_values)
        # an experiment's start no later than the stored stats (what came after the last
        # store was lost in a restart: see `VariantStats.no_later_than`)
        self._starts = {
            (model, experiment): no_later_than(start, state.stats.get(model, {}))
            for (model, experiment), start in state.starts.items()
        }
        self._inflight: dict[str, dict[str, dict[str, tuple[int, float]]]] = {}
        self._shadow: dict[str, dict[str, tuple[int, int]]] = {}
        self._refs: OrderedDict[str, PredictionRef] = OrderedDict()
        self._pending = store.pending_count()
        # Feedback and the references it waits for meet under this lock: either the
        # references are stored first (the feedback finds them) or the pending feedback is
        # (the references' batch finds it), never both missed.
        self._joining = asyncio.Lock()
        # Snapshots of each model's stats, oldest first: the first is the newest one taken
        # at or before the integration window's start (the load counts as time -inf, so a
        # restarted actor judges on everything until a window has passed).
        self._history: dict[str, deque[tuple[float, dict[str, VariantStats]]]] = {}

    def of(self, model: str) -> dict[str, VariantStats]:
        """The model's cumulative stats per variant."""
        return dict(self._stats.get(model, {}))

    def shadow(self, model: str) -> dict[str, tuple[int, int]]:
        """Per shadow variant: rows compared, rows that agreed with the primary."""
        return dict(self._shadow.get(model, {}))

    def inflight(self, model: str) -> dict[str, int]:
        """Requests in flight per variant, as the replicas last reported (stale reports of
        a replica that stopped reporting do not count)."""
        now = self._clock()
        fresh = _STALE_INFLIGHT_FACTOR * self._config.stats_flush_s
        return {
            variant: sum(n for n, at in replicas.values() if now - at <= fresh)
            for variant, replicas in self._inflight.get(model, {}).items()
        }

    def experiment_start(self, table: RoutingTable) -> dict[str, VariantStats] | None:
        """For a new A/B experiment, the stats its verdicts count from (stored with the
        table, then `started`); None when it has one already or is no experiment."""
        if not table.experiment or (table.model, table.experiment) in self._starts:
            return None
        stats = self._stats.get(table.model, {})
        return {v.name: stats.get(v.name, VariantStats()) for v in table.variants}

    def started(self, table: RoutingTable, start: Mapping[str, VariantStats]) -> None:
        """The experiment's start is stored."""
        self._starts[(table.model, table.experiment)] = dict(start)

    # -- what the replicas and clients send ---------------------------------------------

    async def record(self, batch: ServingBatch) -> None:
        """Merge one ingress replica's flush: references, stats, in-flight counts, shadows.

        The references are stored first: once a request is counted, feedback for it is
        joined, never left pending.
        """
        if batch.refs:
            async with self._joining:
                await asyncio.to_thread(self._store.add_refs, batch.refs)
                for ref in batch.refs:
                    self._remember(ref)
                if self._pending:  # only look for early feedback when some is waiting
                    pending = await asyncio.to_thread(
                        self._store.pending_feedback, [r.request_id for r in batch.refs]
                    )
                    for feedback in pending:
                        await self._join(self._refs[feedback.request_id], feedback)
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

    async def feedback(self, items: list[Feedback]) -> list[str]:
        """Attach ground truth to earlier predictions; per item: recorded, pending (its
        prediction is not known yet) or duplicate.

        Raises:
            InvalidInput: a label cannot be compared with its prediction (every such item
                named, `items[i].label`); then nothing is recorded.
        """
        async with self._joining:
            return await self._feedback(items)

    async def _feedback(self, items: list[Feedback]) -> list[str]:
        known = []
        for item in items:
            exists, _ = await asyncio.to_thread(self._store.feedback_value, item.request_id)
            ref = None
            if not exists:
                ref = self._refs.get(item.request_id) or await asyncio.to_thread(
                    self._store.ref, item.request_id
                )
            known.append((exists, ref))
        values = self._score(items, known)
        statuses = []
        for item, (exists, ref), value in zip(items, known, values, strict=True):
            if exists:
                statuses.append("duplicate")
            elif ref is None:
                await asyncio.to_thread(self._store.add_feedback, item, None, self._clock())
                self._pending += 1
                statuses.append("pending")
            else:
                assert value is not None
                self._count(ref, value)
                await asyncio.to_thread(self._store.add_feedback, item, value, self._clock())
                statuses.append("recorded")
        return statuses

    def _score(
        self, items: list[Feedback], known: list[tuple[bool, PredictionRef | None]]
    ) -> list[float | None]:
        """Each item's outcome (None: duplicate or pending), all checked before any is
        recorded."""
        values: list[float | None] = []
        problems: list[FieldError] = []
        for index, (item, (exists, ref)) in enumerate(zip(items, known, strict=True)):
            if exists or ref is None:
                values.append(None)
                continue
            try:
                values.append(outcome_of(ref, item, self._rules, f"items[{index}].label"))
            except InvalidInput as exc:
                problems.extend(exc.field_errors)
                values.append(None)
        if problems:
            raise InvalidInput(
                ErrorCode.VALIDATION_FAILED,
                "; ".join(f"{p.field}: {p.message}" for p in problems[:5]),
                field_errors=tuple(problems),
            )
        return values

    # -- verdicts and evidence ------------------------------------------------------------

    def verdicts(self, table: RoutingTable | None) -> list[Verdict]:
        """The A/B verdicts of a table's experiment now; each look lowers the stored
        running p-values."""
        if table is None:
            return []
        model = table.model
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
            AbTestConfig(
                config.alpha, config.tau, config.min_outcomes, config.minimum_effect, config.power
            ),
            known,
        )
        for verdict in found:
            key = (model, table.experiment, verdict.candidate)
            if verdict.p_value < self._p_values.get(key, 1.0):
                self._p_values[key] = verdict.p_value
                self._store.save_p_value(key, verdict.p_value)
        return found

    def integration(self, table: RoutingTable | None, version: int) -> Evidence | None:
        """The version's integration check over the recent window (see
        `app.core.serving_evidence`)."""
        rule = IntegrationRule(
            self._config.integration_min_requests,
            self._config.integration_max_error_rate,
            self._config.integration_window_s,
        )
        return integration(table, version, self.recent(table.model) if table else {}, rule)

    def recent(self, model: str) -> dict[str, VariantStats]:
        """The model's stats over the integration window (`integration_window_s`)."""
        history = self._history.get(model)
        base = history[0][1] if history else {}
        return {
            name: value.minus(base[name]) if name in base else value
            for name, value in self._stats.get(model, {}).items()
        }

    def snapshot(self) -> None:
        """Remember the stats now, for the windows (called every `stats_persist_s`)."""
        now = self._clock()
        start = now - self._config.integration_window_s
        for model, variants in self._stats.items():
            history = self._history.setdefault(model, deque([(-math.inf, {})]))
            history.append((now, dict(variants)))
            while len(history) >= 2 and history[1][0] <= start:
                history.popleft()

    def ab(
        self, table: RoutingTable | None, candidate: int, baseline: int | None
    ) -> Evidence | None:
        """The A/B verdict of `candidate` against `baseline` (any baseline when None)."""
        for verdict in self.verdicts(table):
            assert table is not None
            cand, base = table.variant(verdict.candidate), table.variant(verdict.baseline)
            if (
                cand
                and base
                and cand.version == candidate
                and (baseline is None or base.version == baseline)
            ):
                return ab_evidence(verdict)
        return None

    def drained(self, model: str, table: RoutingTable | None, version: int) -> Evidence | None:
        """Whether the version is drained (see `app.core.serving_evidence.drain`)."""
        return drain(
            table,
            version,
            self._stats.get(model, {}),
            self.inflight(model),
            self._clock(),
            self._config.drain_window_s,
        )

    # -- upkeep -----------------------------------------------------------------------------

    async def persist(self) -> None:
        """Store the stats (and publish the quality gauges) every `stats_persist_s`."""
        while True:
            await asyncio.sleep(self._config.stats_persist_s)
            self.snapshot()
            # a copy of every model's dict: the thread reads it while this loop goes on
            # (feedback can add a variant to a model's dict at any time)
            stats = {model: dict(variants) for model, variants in self._stats.items()}
            try:
                await asyncio.to_thread(self._store.save_stats, stats)
            except Exception:
                log.exception("could not store serving stats")
            try:
                if self._gauges is not None:
                    self._gauges.publish(self._stats)
            except Exception:
                log.warning("quality gauges not published", exc_info=True)

    async def _join(self, ref: PredictionRef, item: Feedback) -> None:
        """Feedback that waited for its prediction: scored now (a label that cannot be
        compared is left unscored, never counted as wrong)."""
        self._pending = max(0, self._pending - 1)
        try:
            value = outcome_of(ref, item, self._rules)
        except InvalidInput as exc:
            log.warning("feedback for %s not scored: %s", item.request_id, exc.message)
            return
        self._count(ref, value)
        await asyncio.to_thread(self._store.join_feedback, item.request_id, value)

    def _count(self, ref: PredictionRef, value: float) -> None:
        variants = self._stats.setdefault(ref.model, {})
        variants[ref.variant] = variants.get(ref.variant, VariantStats()).with_outcome(value)

    def _remember(self, ref: PredictionRef) -> None:
        self._refs[ref.request_id] = ref
        while len(self._refs) > _REFS_IN_MEMORY:
            self._refs.popitem(last=False)
