"""The threads that run the API's blocking work: `def` endpoints, and token checks that do I/O.

Starlette runs a `def` endpoint on AnyIO's worker threads, and AnyIO ends a worker thread
when the task that started it ends, unless it finds a root task for the event loop (one
run by `asyncio.run`). A Ray Serve replica's loop runs forever with no such task, and every
request is a task of its own: so every request to a `def` endpoint started a new thread,
and ended it with the request (766 threads for 828 runs logged, sampled with py-spy).
These threads stay between requests instead. Two runs of a throwaway A/B in one service,
alternating 6 rounds of `POST /experiments/{id}/runs` through each way (p50 one client at
a time, then runs/s with 8 clients): p50 18.1 against 18.7 ms and 47.3 against 42.3
runs/s; p50 15.8 against 17.4 ms and 48.7 against 46.8 runs/s.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

# as many as AnyIO's default limit on its worker threads; started as they are needed
_POOL = ThreadPoolExecutor(max_workers=40, thread_name_prefix="api")


async def run_blocking(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """`fn(*args, **kwargs)` on the API's threads, in a copy of the caller's context (as
    Starlette's `run_in_threadpool` does)."""
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_POOL, call)


def on_api_threads(endpoint: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """A `def` endpoint as a coroutine that runs it on the API's threads. FastAPI reads the
    parameters and the return type of the function it wraps."""

    @functools.wraps(endpoint)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return await run_blocking(endpoint, *args, **kwargs)

    return run
