"""Model backends beyond the default model server: Triton and vLLM.

A deployment that puts a version on `triton` or `vllm` is prepared before its routing
table changes: the Triton server exports and loads the version, the vLLM backend starts
the version's engine. A version that cannot run there fails the deploy request (4xx, or
503 when the backend is not set up) and the routing stays as it was. LLM engines that no
variant uses any more are stopped after a deploy or undeploy.
"""

from __future__ import annotations

import asyncio
import logging

from app.core.deployment import DeploySpec, placements
from app.core.routing import Backend, RoutingTable
from app.errors import ErrorCode, Unavailable
from app.ports.serving import LlmBackend, RoutingSource, TritonBackend

log = logging.getLogger(__name__)

_CATCH_UP_S = 30.0  # how long a delayed retirement waits for the replica's table copy


class Backends:
    """Prepares backends for deployments (the deploy and undeploy routes call this).

    Args:
        triton: the Triton backend (None: not part of this service).
        llm: the vLLM backend (None: not part of this service).
        tables: the ingress's routing tables; with `retire_after_s`, engines are retired
            that long after a deploy, by the table then (requests routed by a replica's
            older copy of the table, and streams in flight, finish first).
        retire_after_s: the delay (0: at once, by the table given to `settle`).
    """

    def __init__(
        self,
        triton: TritonBackend | None,
        llm: LlmBackend | None,
        tables: RoutingSource | None = None,
        retire_after_s: float = 0.0,
    ) -> None:
        self.triton = triton
        self.llm = llm
        self._tables = tables
        self._retire_after_s = retire_after_s
        self._later: set[asyncio.Task[None]] = set()

    async def prepare(self, model: str, spec: DeploySpec) -> None:
        """Get every version of `spec` ready on its backend before traffic moves."""
        for version, backend in placements(spec):
            if backend is Backend.TRITON:
                if self.triton is None:
                    raise _absent(backend)
                await self.triton.prepare(model, version)
            elif backend is Backend.VLLM:
                if self.llm is None:
                    raise _absent(backend)
                await self.llm.ensure(model, version)

    async def settle(self, model: str, table: RoutingTable | None) -> None:
        """After a deploy or an undeploy: stop LLM engines the routing no longer uses
        (at once, or after `retire_after_s` by the table then)."""
        if self.llm is None:
            return
        if self._tables is not None and self._retire_after_s > 0:
            task = asyncio.ensure_future(self._retire_later(model, table))
            self._later.add(task)
            task.add_done_callback(self._later.discard)
            return
        await self._retire(model, table)

    async def _retire_later(self, model: str, settled: RoutingTable | None) -> None:
        """Retire by this replica's table once it has caught up with the one `settle` was
        given (a newer one wins; given none, an undeploy: until the table is gone)."""
        await asyncio.sleep(self._retire_after_s)
        assert self._tables is not None
        deadline = asyncio.get_running_loop().time() + _CATCH_UP_S
        while True:
            current = self._tables.get(model)
            caught_up = (
                current is None
                if settled is None
                else current is not None and current.revision >= settled.revision
            )
            if caught_up or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.5)
        await self._retire(model, current)

    async def _retire(self, model: str, table: RoutingTable | None) -> None:
        assert self.llm is not None
        # Only variants that take traffic (or a shadow's copy of it): a replaced version
        # stays in the table at weight 0 for its statistics, but needs no engine.
        live = () if table is None else (*table.serving(), *filter(None, [table.shadow()]))
        keep = {v.version for v in live if v.backend is Backend.VLLM}
        try:
            await self.llm.retire(model, keep)
        except Exception:  # the deploy itself succeeded; an idle engine is not an error
            log.exception("could not stop unused LLM engines of %s", model)


def _absent(backend: Backend) -> Unavailable:
    return Unavailable(
        ErrorCode.BACKEND_UNAVAILABLE, f"The {backend.value} backend is not part of this service."
    )
