"""`deployments.stream_coalescing.coalesced`: the LLM replica's gathering of streamed
tokens (the first at once, then at most one message per interval)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from deployments.stream_coalescing import coalesced

INTERVAL_S = 3600.0  # the tests' sleep is gated, never real: no item comes "too late"


class Source:
    """Yields 1, then waits for `release`, then 2, 3 and 4 with a loop turn between each
    (each is queued on its own), then ends or fails."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.release = asyncio.Event()
        self.failure = failure
        self.cancelled = asyncio.Event()

    async def items(self) -> AsyncIterator[int]:
        try:
            yield 1
            await self.release.wait()
            for item in (2, 3, 4):
                yield item
                await asyncio.sleep(0)
            if self.failure is not None:
                raise self.failure
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


class GatedSleep:
    """A `sleep` that returns only once the test opens it, recording what it was asked."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self.open = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await self.open.wait()


def test_the_first_item_goes_alone_and_later_ones_gather_within_an_interval() -> None:
    async def run() -> tuple[list[list[int]], list[float]]:
        source, sleep = Source(), GatedSleep()
        stream = coalesced(source.items(), INTERVAL_S, sleep=sleep)
        batches = [await anext(stream)]
        assert sleep.asked == []  # the first was not held back
        source.release.set()
        waiting = asyncio.ensure_future(anext(stream))
        while len(sleep.asked) < 1:  # item 2 came within the interval: it waits
            await asyncio.sleep(0)
        for _ in range(10):  # the source queues 3 and 4 meanwhile
            await asyncio.sleep(0)
        sleep.open.set()
        batches.append(await waiting)
        batches.extend([b async for b in stream])
        return batches, sleep.asked

    batches, asked = asyncio.run(run())
    assert batches == [[1], [2, 3, 4]]
    assert len(asked) == 1 and 0 < asked[0] <= INTERVAL_S


def test_without_an_interval_each_item_goes_alone_in_order() -> None:
    async def run() -> list[list[int]]:
        source = Source()
        source.release.set()
        return [b async for b in coalesced(source.items(), 0)]

    assert asyncio.run(run()) == [[1], [2], [3], [4]]


def test_a_failure_of_the_source_comes_after_the_items_before_it() -> None:
    async def run() -> list[list[int]]:
        source = Source(RuntimeError("engine died"))
        source.release.set()
        sleep = GatedSleep()
        sleep.open.set()
        got: list[list[int]] = []
        with pytest.raises(RuntimeError, match="engine died"):
            async for batch in coalesced(source.items(), INTERVAL_S, sleep=sleep):
                got.append(batch)
        return got

    got = asyncio.run(run())
    assert [item for batch in got for item in batch] == [1, 2, 3, 4]


def test_closing_the_stream_early_cancels_the_source() -> None:
    async def run() -> bool:
        source = Source()  # never released: the source waits after its first item
        stream = coalesced(source.items(), INTERVAL_S, sleep=GatedSleep())
        assert await anext(stream) == [1]
        await stream.aclose()
        await asyncio.wait_for(source.cancelled.wait(), 10)
        return source.cancelled.is_set()

    assert asyncio.run(run())
