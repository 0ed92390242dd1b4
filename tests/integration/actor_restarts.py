"""Kill a restartable actor and wait until Ray has brought it back."""

from __future__ import annotations

import time
from typing import Any

import ray
from ray.util.state import get_actor


def kill_and_wait_restarted(handle: Any, timeout_s: float = 120.0) -> None:
    """``ray.kill`` returns before the actor is gone, so a call made right after it may
    still reach the old process and a later one the restarting one. Wait until Ray reports
    the actor restarted and alive before the test reads through it."""
    actor_id = handle._actor_id.hex()
    restarts = _restarts(actor_id)
    ray.kill(handle, no_restart=False)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = get_actor(actor_id)
        if state is not None and state.state == "ALIVE" and _count(state) > restarts:
            ray.get(handle.__ray_ready__.remote(), timeout=timeout_s)
            return
        time.sleep(0.25)
    raise AssertionError(f"actor {actor_id} did not restart within {timeout_s} s")


def _restarts(actor_id: str) -> int:
    state = get_actor(actor_id)
    return 0 if state is None else _count(state)


def _count(state: Any) -> int:
    return int(getattr(state, "num_restarts", 0) or 0)
