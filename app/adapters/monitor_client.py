"""The ingress side of the monitor actor: its calls for the API, and the models' sample
rates kept current for the prediction log."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from app.adapters.actor_client import ActorClient
from app.core.monitoring import Alert, AlertState, MonitoringPolicy

log = logging.getLogger(__name__)


class MonitorClient:
    """`MonitorControl`: the monitor actor's methods, awaited (see `ActorClient` for its
    errors)."""

    def __init__(self, handle: Any) -> None:
        self._actor = ActorClient(handle, "the monitor")

    async def policy(self, model: str) -> tuple[MonitoringPolicy, bool]:
        """See `MonitorControl.policy`."""
        policy = await self._actor.call("policy", model)
        own = await self._actor.call("has_policy", model)
        return policy, own

    async def set_policy(self, model: str, policy: MonitoringPolicy) -> MonitoringPolicy:
        """See `MonitorControl.set_policy`."""
        result: MonitoringPolicy = await self._actor.call("set_policy", model, policy)
        return result

    async def evaluate(self, model: str) -> dict[int, dict[str, Any]]:
        """See `MonitorControl.evaluate`."""
        result: dict[int, dict[str, Any]] = await self._actor.call("evaluate", model)
        return result

    async def alerts(
        self, model: str | None, state: AlertState | None, offset: int, limit: int
    ) -> list[Alert]:
        """See `MonitorControl.alerts`."""
        result: list[Alert] = await self._actor.call("alerts", model, state, offset, limit)
        return result

    async def drift(self, model: str) -> dict[int, dict[str, Any]]:
        """See `MonitorControl.drift`."""
        result: dict[int, dict[str, Any]] = await self._actor.call("drift", model)
        return result

    async def drift_of(self, model: str, version: int) -> dict[str, Any]:
        """See `MonitorControl.drift_of`."""
        result: dict[str, Any] = await self._actor.call("drift_of", model, version)
        return result

    def ping(self, timeout_s: float = 5.0) -> None:
        """Block until the actor answers (for the health probe)."""
        self._actor.ping(timeout_s)


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
