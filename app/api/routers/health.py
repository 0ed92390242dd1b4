"""`/health`: liveness and readiness, public so probes need no token."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from fastapi import APIRouter, Response

from app.api.deps import Probes
from app.api.schemas.health import ComponentOut, HealthReport
from app.api.security import PUBLIC, GuardedRoute
from app.ports.health import ComponentHealth, HealthProbe, HealthStatus

router = APIRouter(prefix="/health", tags=["health"], route_class=GuardedRoute)

PROBE_TIMEOUT_S = 5.0

_READY_RESPONSES: dict[int | str, dict[str, object]] = {
    503: {"description": "Not ready: a required component is down.", "model": HealthReport}
}


@router.get("", response_model=HealthReport, responses=_READY_RESPONSES, openapi_extra=PUBLIC)
async def health(probes: Probes, response: Response) -> HealthReport:
    """Liveness and readiness with every component's status (503 when not ready)."""
    return await _report(probes, response)


@router.get("/live", response_model=HealthReport, openapi_extra=PUBLIC)
async def live() -> HealthReport:
    """Liveness only: the API process answers."""
    return HealthReport(live=True, ready=True, status=HealthStatus.OK, components=[])


@router.get("/ready", response_model=HealthReport, responses=_READY_RESPONSES, openapi_extra=PUBLIC)
async def ready(probes: Probes, response: Response) -> HealthReport:
    """Readiness: 200 when every required component is ok, else 503."""
    return await _report(probes, response)


async def _report(probes: tuple[HealthProbe, ...], response: Response) -> HealthReport:
    results = await asyncio.gather(*(_probe(p) for p in probes))
    is_ready = all(r.status is not HealthStatus.DOWN for r in results if r.required)
    response.status_code = 200 if is_ready else 503
    return HealthReport(
        live=True,
        ready=is_ready,
        status=HealthStatus.OK if is_ready else HealthStatus.DOWN,
        components=[ComponentOut.of(r) for r in results],
    )


# Probes run on threads of their own, one at a time per probe: a probe stuck on a store
# that is out (connect timeouts, retries) is waited for again by the next report rather
# than started once more, so stuck probes never pile up and starve the others (or the
# request threads) of threads.
_PROBE_THREADS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="health-probe")
_in_flight: dict[int, Future[ComponentHealth]] = {}
_in_flight_lock = threading.Lock()


def _started(probe: HealthProbe) -> Future[ComponentHealth]:
    with _in_flight_lock:
        running = _in_flight.get(id(probe))
        if running is None or running.done():
            running = _in_flight[id(probe)] = _PROBE_THREADS.submit(probe.probe)
        return running


async def _probe(probe: HealthProbe) -> ComponentHealth:
    started = time.perf_counter()
    try:
        running = asyncio.shield(asyncio.wrap_future(_started(probe)))
        return await asyncio.wait_for(running, PROBE_TIMEOUT_S)
    except TimeoutError:
        elapsed = (time.perf_counter() - started) * 1000
        return ComponentHealth(probe.name, HealthStatus.DOWN, "timed out", elapsed)
