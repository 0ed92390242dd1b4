"""Streamed items gathered into fewer messages, without delaying the first; and an
acknowledgement only where the first is slow to come.

Importable by both interpreters (standard library only): the LLM replica
(`deployments.llm_server`, in the LLM environment) uses it; the unit tests run it in the
service's environment.

Every message a Serve replica yields crosses to the caller as its own Ray report, and the
ingress then writes it as its own HTTP chunk: a fixed cost per message, on the same CPUs
as the engine. Ray Serve LLM's own batching (`stream_batching_interval_ms`) waits a whole
interval before its first message, which adds that interval to the time to first token.
`coalesced` sends an item as soon as it comes when the last message went more than an
interval ago (the first always), and otherwise waits out the interval and sends every item
that came meanwhile in one message. No item waits longer than one interval, and the last
not at all: when the source ends during a wait, what came goes at once (a stream's last
tokens, its usage and its end come together; waiting out the interval there only made the
whole stream longer).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import suppress
from typing import TypeVar

T = TypeVar("T")
A = TypeVar("A")


async def coalesced(
    items: AsyncIterator[T],
    interval_s: float | Callable[[], float],
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> AsyncGenerator[list[T], None]:
    """`items` as lists: at most one list per `interval_s`, the first at once (`sleep`
    waits out the rest of an interval; tests pass their own). `interval_s` may be a
    function, asked at every wait: an interval that follows the load.

    `items` is read by a task of its own, so it keeps flowing while a list waits. Closing
    this generator early cancels that task (and so the source: vLLM aborts a request whose
    stream is cancelled). When `items` ends (or fails) during a wait, the wait ends there.
    An exception of `items` is raised here after the items before it. A non-positive
    interval sends each item alone, as it comes.
    """
    if not callable(interval_s) and interval_s <= 0:
        async for item in items:
            yield [item]
        return
    interval = interval_s if callable(interval_s) else lambda: interval_s
    queue: asyncio.Queue[tuple[T] | None] = asyncio.Queue()  # None: the source ended

    async def read() -> None:
        try:
            async for item in items:
                queue.put_nowait((item,))
        finally:
            queue.put_nowait(None)

    reader = asyncio.create_task(read())
    loop = asyncio.get_running_loop()
    sent = -math.inf
    try:
        ended = False
        while not ended:
            first = await queue.get()
            if first is None:
                break
            wait = sent + interval() - loop.time()
            if wait > 0 and not reader.done():
                await _until_either(sleep(wait), reader)
            batch = [first[0]]
            while not queue.empty():
                more = queue.get_nowait()
                if more is None:
                    ended = True
                    break
                batch.append(more[0])
            sent = loop.time()
            yield batch
        await reader  # the source's exception, if it failed
    finally:
        if not reader.done():
            reader.cancel()


async def _until_either(wait: Awaitable[object], reader: asyncio.Task[None]) -> None:
    """Until `wait` is over or `reader` has ended, whichever comes first."""
    timer = asyncio.ensure_future(wait)
    try:
        await asyncio.wait({timer, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not timer.done():
            timer.cancel()


async def acknowledged(
    items: AsyncIterator[T], after_s: float, ack: A
) -> AsyncGenerator[T | A, None]:
    """`items`, after `ack` if the first item has not come within `after_s`.

    Whoever waits for the first message hears within `after_s` that the work began (so a
    bound on that wait never cuts a long answer short), and a quick answer costs no
    message more: the first item is already under way while the wait runs. Closing this
    generator early closes `items`.
    """
    first: asyncio.Future[T] = asyncio.ensure_future(anext(items))
    try:
        done, _ = await asyncio.wait({first}, timeout=after_s)
        if not done:
            yield ack
        try:
            item = await first
        except StopAsyncIteration:
            return
        yield item
        async for item in items:
            yield item
    finally:
        if not first.done():
            first.cancel()
            with suppress(asyncio.CancelledError, StopAsyncIteration):
                await first
        elif not first.cancelled():
            first.exception()  # retrieved: a failure after the consumer left is not "lost"
        close = getattr(items, "aclose", None)
        if close is not None:
            await close()
