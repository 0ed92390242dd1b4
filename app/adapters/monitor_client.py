"""The ingress side of the monitor actor: its calls for the API, and the models' sample
rates kept current for the prediction log."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from app.core.monitoring import Alert, AlertState, MonitoringPolicy
from app.errors import DomainError, ErrorCode, Unavailable

log = logging.getLogger(__name__)


class MonitorClient:
    """The monitor actor's methods, awaited."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    async def policy(self, model: str) -> tuple[MonitoringPolicy, bool]:
        """A model's policy, and whether it is its own (else the defaults)."""
        policy = await self._call("policy", model)
        own = await self._call("has_policy", model)
        return policy, own

    async def set_policy(self, model: str, policy: MonitoringPolicy) -> MonitoringPolicy:
        result: MonitoringPolicy = await self._call("set_policy", model, policy)
        return result

    async def evaluate(self, model: str) -> dict[int, dict[str, Any]]:
        result: dict[int, dict[str, Any]] = await self._call("evaluate", model)
        return result

    async def alerts(
        self, model: str | None, state: AlertState | None, offset: int, limit: int
    ) -> list[Alert]:
        result: list[Alert] = await self._call("alerts", model, state, offset, limit)
        return result

    async def drift(self, model: str) -> dict[int, dict[str, Any]]:
        result: dict[int, dict[str, Any]] = await self._call("drift", model)
        return result

    async def drift_of(self, model: str, version: int) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("drift_of", model, version)
        return result

    async def _call(self, method: str, *args: Any) -> Any:
        import ray

        try:
            return await getattr(self._handle, method).remote(*args)
        except DomainError:
            raise
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
            log.warning("monitor actor unavailable during %s: %s", method, type(exc).__name__)
            raise Unavailable(
                ErrorCode.BACKEND_UNAVAILABLE, "The monitor is restarting; retry shortly."
            ) from None

    def ping(self, timeout_s: float = 5.0) -> None:
        """Block until the actor answers (for the health probe)."""
        import ray

        ray.get(self._handle.ping.remote(), timeout=timeout_s)


class SampleRates:
    """Each model's prediction-log sample rate, refreshed every `poll_s` seconds.

    Args:
        handle: the monitor actor's handle.
        default: the rate until the first refresh (and of models without a policy).
        poll_s: the refresh period.
    """

    def __init__(self, handle: Any, default: float, poll_s: float) -> None:
        self._handle = handle
        self._default = default
        self._rates: dict[str, float] = {}
        self._poll_s = poll_s
        self._task: asyncio.Task[None] | None = None

    def __call__(self, model: str) -> float:
        return self._rates.get(model, self._default)

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _follow(self) -> None:
        while True:
            try:
                self._default, self._rates = await self._handle.sample_rates.remote()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("sample rates not refreshed; keeping the last ones", exc_info=True)
            await asyncio.sleep(self._poll_s)
