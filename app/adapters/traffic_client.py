"""The ingress side of the traffic actor: a live copy of the routing tables, a buffer of
serving stats flushed in batches, and the deployment calls of the API."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from app.adapters.actor_client import ActorClient
from app.core.deployment import DeploymentView, DeploySpec, ServingBatch
from app.core.feedback import Feedback, PredictionRef
from app.core.routing import RoutingTable
from app.core.serving_stats import LATENCY_BOUNDS_MS, Outcomes, VariantStats, latency_bucket

log = logging.getLogger(__name__)

_MAX_PENDING_BATCHES = 120


class RoutingCache:
    """The routing tables, kept current by long-polling the traffic actor.

    Args:
        handle: the traffic actor's handle.
        poll_timeout_s: how long one long-poll waits for a change.
    """

    def __init__(self, handle: Any, poll_timeout_s: float = 30.0) -> None:
        self._handle = handle
        self._poll_timeout_s = poll_timeout_s
        self._tables: dict[str, RoutingTable] = {}
        self._epoch = ""
        self._revision = -1
        self._task: asyncio.Task[None] | None = None

    def get(self, model: str) -> RoutingTable | None:
        """See `RoutingSource.get`."""
        return self._tables.get(model)

    async def start(self) -> None:
        """Fetch the tables once, then follow changes in the background."""
        try:
            await self._poll(0.0)
        except Exception:
            log.exception("routing tables not available yet; retrying in the background")
        self._task = asyncio.ensure_future(self._follow())

    async def stop(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()

    async def _follow(self) -> None:
        while True:
            try:
                await self._poll(self._poll_timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("routing table poll failed; retrying", exc_info=True)
                await asyncio.sleep(1.0)

    async def _poll(self, timeout_s: float) -> None:
        epoch, revision, tables = await self._handle.tables_after.remote(
            self._epoch, self._revision, timeout_s
        )
        if (epoch, revision) != (self._epoch, self._revision):
            self._tables, self._epoch, self._revision = tables, epoch, revision
            log.info("routing tables at revision %d (%d model(s))", revision, len(tables))


class _Counter:
    """Mutable per-variant counts between two flushes."""

    __slots__ = ("requests", "errors", "latency", "last_at")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latency = [0] * len(LATENCY_BOUNDS_MS)
        self.last_at = 0.0

    def frozen(self) -> VariantStats:
        return VariantStats(
            self.requests, self.errors, tuple(self.latency), Outcomes(), self.last_at
        )


class BufferedRecorder:
    """`ServingRecorder` that ships its buffer to the traffic actor every `flush_s`.

    A failed flush is kept and sent again with the next one (up to a bound), so a restart
    of the actor loses no prediction references.
    """

    def __init__(self, handle: Any, flush_s: float) -> None:
        self._handle = handle
        self._flush_s = flush_s
        self._replica = uuid.uuid4().hex[:12]
        self._counts: dict[tuple[str, str], _Counter] = {}
        self._inflight: dict[tuple[str, str], int] = {}
        self._refs: list[PredictionRef] = []
        self._shadow: dict[tuple[str, str], tuple[int, int]] = {}
        self._pending: list[ServingBatch] = []
        self._task: asyncio.Task[None] | None = None

    def started(self, model: str, variant: str) -> None:
        """See `ServingRecorder.started`."""
        key = (model, variant)
        self._inflight[key] = self._inflight.get(key, 0) + 1

    def finished(self, model: str, variant: str, latency_ms: float, ok: bool) -> None:
        """See `ServingRecorder.finished`."""
        key = (model, variant)
        self._inflight[key] -= 1
        counter = self._counts.get(key)
        if counter is None:
            counter = self._counts[key] = _Counter()
        counter.requests += 1
        counter.errors += 0 if ok else 1
        counter.latency[latency_bucket(latency_ms)] += 1
        counter.last_at = time.time()

    def rejected(self, model: str, variant: str) -> None:
        """See `ServingRecorder.rejected`."""
        self._inflight[(model, variant)] -= 1

    def predicted(self, ref: PredictionRef) -> None:
        """See `ServingRecorder.predicted`."""
        self._refs.append(ref)

    def compared(self, model: str, variant: str, rows: int, agreed: int) -> None:
        """See `ServingRecorder.compared`."""
        seen, same = self._shadow.get((model, variant), (0, 0))
        self._shadow[(model, variant)] = (seen + rows, same + agreed)

    async def start(self) -> None:
        """Flush in the background."""
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Flush what is left, then stop."""
        if self._task is not None:
            self._task.cancel()
        await self.flush()

    async def flush(self) -> None:
        """Send everything buffered so far (and earlier failed batches)."""
        self._pending.append(self._take())
        self._pending = self._pending[-_MAX_PENDING_BATCHES:]
        while self._pending:
            try:
                await self._handle.record.remote(self._pending[0])
            except Exception:
                log.warning(
                    "serving stats flush failed; keeping %d batch(es)",
                    len(self._pending),
                    exc_info=True,
                )
                return
            self._pending.pop(0)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_s)
            await self.flush()

    def _take(self) -> ServingBatch:
        stats: dict[str, dict[str, VariantStats]] = {}
        for (model, variant), counter in self._counts.items():
            stats.setdefault(model, {})[variant] = counter.frozen()
        inflight: dict[str, dict[str, int]] = {}
        for (model, variant), count in self._inflight.items():
            inflight.setdefault(model, {})[variant] = count
        shadow: dict[str, dict[str, tuple[int, int]]] = {}
        for (model, variant), pair in self._shadow.items():
            shadow.setdefault(model, {})[variant] = pair
        batch = ServingBatch(self._replica, stats, inflight, tuple(self._refs), shadow)
        self._counts, self._refs, self._shadow = {}, [], {}
        return batch


class TrafficClient:
    """`ServingControl`: the API's calls to the traffic actor (see `ActorClient` for its
    errors)."""

    def __init__(self, handle: Any) -> None:
        self._actor = ActorClient(handle, "the traffic service")

    async def deploy(self, model: str, spec: DeploySpec, actor: str) -> DeploymentView:
        """See `Traffic.deploy`."""
        result: DeploymentView = await self._actor.call("deploy", model, spec, actor)
        return result

    async def undeploy(self, model: str, actor: str) -> None:
        """See `Traffic.undeploy`."""
        await self._actor.call("undeploy", model, actor)

    async def view(self, model: str) -> DeploymentView:
        """See `Traffic.view`."""
        result: DeploymentView = await self._actor.call("view", model)
        return result

    async def feedback(self, items: list[Feedback]) -> list[str]:
        """See `Traffic.feedback`."""
        result: list[str] = await self._actor.call("feedback", items)
        return result

    def ping(self, timeout_s: float = 5.0) -> None:
        """Block until the actor answers (for the health probe)."""
        self._actor.ping(timeout_s)
