"""`deployments.stream_coalescing`: the LLM replica's gathering of streamed tokens (the
first at once, then at most one message per interval), and its acknowledgement of a
request whose answer is slow to begin."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

import pytest

from deployments.stream_coalescing import acknowledged, coalesced

INTERVAL_S = 3600.0  # the tests' sleep is gated, never real: no item comes "too late"
DEADLINE_S = 10.0  # a hang guard on every wait for an event
T = TypeVar("T")


class GatedSleep:
    """A `sleep` that returns only once the test opens it, recording what it was asked
    (`called`: it was asked at least once)."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self.called = asyncio.Event()
        self.open = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        self.called.set()
        await self.open.wait()


class Source:
    """Yields 1, then waits for `release`, then 2; given a `GatedSleep`, waits until the
    stream waits out its interval before yielding 3 and 4 (so they come during the wait);
    then (`finished`), if it is to `hold_end`, waits for `end`; then ends or fails."""

    def __init__(
        self,
        sleep: GatedSleep | None = None,
        failure: Exception | None = None,
        *,
        hold_end: bool = False,
    ) -> None:
        self.release = asyncio.Event()
        self.sleep = sleep
        self.failure = failure
        self.hold_end = hold_end
        self.finished = asyncio.Event()
        self.end = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def items(self) -> AsyncIterator[int]:
        try:
            yield 1
            await self.release.wait()
            yield 2
            if self.sleep is not None:
                await self.sleep.called.wait()
            yield 3
            yield 4
            self.finished.set()
            if self.hold_end:
                await self.end.wait()
            if self.failure is not None:
                raise self.failure
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


async def rest(stream: AsyncIterator[T]) -> list[T]:
    """What is left of `stream`."""
    return [item async for item in stream]


def test_the_first_item_goes_alone_and_later_ones_gather_within_an_interval() -> None:
    async def run() -> tuple[list[list[int]], list[float]]:
        sleep = GatedSleep()
        source = Source(sleep, hold_end=True)
        stream = coalesced(source.items(), INTERVAL_S, sleep=sleep)
        batches = [await anext(stream)]
        assert sleep.asked == []  # the first was not held back
        source.release.set()
        waiting = asyncio.ensure_future(anext(stream))
        # item 2 came within the interval: the stream waits; 3 and 4 come meanwhile, and
        # the source is still open (it waits for `end`), so the wait goes on
        await asyncio.wait_for(source.finished.wait(), DEADLINE_S)
        assert not waiting.done()
        sleep.open.set()
        batches.append(await asyncio.wait_for(waiting, DEADLINE_S))
        source.end.set()
        batches.extend(await asyncio.wait_for(rest(stream), DEADLINE_S))
        return batches, sleep.asked

    batches, asked = asyncio.run(run())
    assert batches == [[1], [2, 3, 4]]
    assert len(asked) == 1 and 0 < asked[0] <= INTERVAL_S


def test_when_the_source_ends_during_a_wait_what_came_goes_at_once() -> None:
    async def run() -> tuple[list[list[int]], list[float]]:
        sleep = GatedSleep()  # never opened: only the source's end can end the wait
        source = Source(sleep)
        stream = coalesced(source.items(), INTERVAL_S, sleep=sleep)
        batches = [await asyncio.wait_for(anext(stream), DEADLINE_S)]
        source.release.set()  # 2 comes within the interval; 3, 4 and the end during the wait
        batches.extend(await asyncio.wait_for(rest(stream), DEADLINE_S))
        return batches, sleep.asked

    batches, asked = asyncio.run(run())
    assert batches == [[1], [2, 3, 4]]
    assert len(asked) == 1  # it did start to wait out the interval


def test_an_interval_given_as_a_function_is_asked_when_the_stream_waits() -> None:
    async def run() -> tuple[list[list[int]], list[float]]:
        sleep = GatedSleep()  # never opened: the source's end ends the wait
        source = Source(sleep)
        # e.g. the replica's streams at the time, times a base interval
        stream = coalesced(source.items(), lambda: 3 * INTERVAL_S, sleep=sleep)
        batches = [await asyncio.wait_for(anext(stream), DEADLINE_S)]
        source.release.set()
        batches.extend(await asyncio.wait_for(rest(stream), DEADLINE_S))
        return batches, sleep.asked

    batches, waits = asyncio.run(run())
    assert batches == [[1], [2, 3, 4]]
    assert len(waits) == 1 and 2 * INTERVAL_S < waits[0] <= 3 * INTERVAL_S


def test_without_an_interval_each_item_goes_alone_in_order() -> None:
    async def run() -> list[list[int]]:
        source = Source()
        source.release.set()
        return await asyncio.wait_for(rest(coalesced(source.items(), 0)), DEADLINE_S)

    assert asyncio.run(run()) == [[1], [2], [3], [4]]


def test_a_failure_of_the_source_comes_after_the_items_before_it() -> None:
    async def run() -> list[list[int]]:
        sleep = GatedSleep()
        sleep.open.set()
        source = Source(failure=RuntimeError("engine died"))
        source.release.set()
        got: list[list[int]] = []

        async def consume() -> None:
            async for batch in coalesced(source.items(), INTERVAL_S, sleep=sleep):
                got.append(batch)

        with pytest.raises(RuntimeError, match="engine died"):
            await asyncio.wait_for(consume(), DEADLINE_S)
        return got

    got = asyncio.run(run())
    assert [item for batch in got for item in batch] == [1, 2, 3, 4]


def test_closing_the_stream_early_cancels_the_source() -> None:
    async def run() -> bool:
        source = Source()  # never released: the source waits after its first item
        stream = coalesced(source.items(), INTERVAL_S, sleep=GatedSleep())
        assert await anext(stream) == [1]
        await stream.aclose()
        await asyncio.wait_for(source.cancelled.wait(), DEADLINE_S)
        return source.cancelled.is_set()

    assert asyncio.run(run())


ACK = "accepted"


class Answer:
    """Yields 1 and 2 once `go` is set (at once if it is set from the start), or fails with
    `failure` instead; records its end (`closed`)."""

    def __init__(self, *, go: bool = True, failure: Exception | None = None) -> None:
        self.go = asyncio.Event()
        if go:
            self.go.set()
        self.failure = failure
        self.closed = asyncio.Event()

    async def items(self) -> AsyncIterator[int]:
        try:
            await self.go.wait()
            if self.failure is not None:
                raise self.failure
            yield 1
            yield 2
        finally:
            self.closed.set()


def test_an_answer_that_begins_within_the_wait_comes_without_an_acknowledgement() -> None:
    async def run() -> list[object]:
        answer = Answer()
        return await asyncio.wait_for(
            rest(acknowledged(answer.items(), INTERVAL_S, ACK)), DEADLINE_S
        )

    assert asyncio.run(run()) == [1, 2]


def test_an_answer_slow_to_begin_is_acknowledged_first() -> None:
    async def run() -> list[object]:
        answer = Answer(go=False)  # begins only once the acknowledgement is out
        stream = acknowledged(answer.items(), 0, ACK)
        got = [await asyncio.wait_for(anext(stream), DEADLINE_S)]
        answer.go.set()
        return got + await asyncio.wait_for(rest(stream), DEADLINE_S)

    assert asyncio.run(run()) == [ACK, 1, 2]


def test_an_empty_answer_and_a_failed_one_end_as_they_are() -> None:
    async def empty() -> AsyncIterator[int]:
        return
        yield 0

    async def run() -> list[object]:
        return await asyncio.wait_for(rest(acknowledged(empty(), INTERVAL_S, ACK)), DEADLINE_S)

    assert asyncio.run(run()) == []

    async def failing() -> list[object]:
        answer = Answer(failure=RuntimeError("engine died"))
        return await asyncio.wait_for(
            rest(acknowledged(answer.items(), INTERVAL_S, ACK)), DEADLINE_S
        )

    with pytest.raises(RuntimeError, match="engine died"):
        asyncio.run(failing())


def test_closing_after_the_acknowledgement_closes_the_answer_still_to_begin() -> None:
    async def run() -> bool:
        answer = Answer(go=False)  # never begins
        stream = acknowledged(answer.items(), 0, ACK)
        assert await asyncio.wait_for(anext(stream), DEADLINE_S) == ACK
        await asyncio.wait_for(stream.aclose(), DEADLINE_S)
        await asyncio.wait_for(answer.closed.wait(), DEADLINE_S)
        return answer.closed.is_set()

    assert asyncio.run(run())


def test_closing_after_the_first_item_closes_the_answer() -> None:
    async def run() -> bool:
        closed = asyncio.Event()

        async def endless() -> AsyncIterator[int]:
            try:
                yield 1
                await asyncio.Event().wait()  # the rest of the answer never comes
                yield 2
            finally:
                closed.set()

        source = endless()  # held here: only the stream's close can end it, not the GC
        stream = acknowledged(source, INTERVAL_S, ACK)
        assert await asyncio.wait_for(anext(stream), DEADLINE_S) == 1
        await asyncio.wait_for(stream.aclose(), DEADLINE_S)
        await asyncio.wait_for(closed.wait(), DEADLINE_S)
        return closed.is_set()

    assert asyncio.run(run())
