"""The prediction log: sampling, batched parquet writes, the cap, reading a window back."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from app.adapters.prediction_log import (
    PredictionLog,
    PredictionLogReader,
    block_columns,
    prediction_score,
)
from app.adapters.storage import ArrowStorage, open_storage
from app.core.drift import PREDICTION
from app.errors import ErrorCode, Unavailable
from app.settings import StorageSettings


@pytest.fixture
def storage(tmp_path: Path) -> ArrowStorage:
    return open_storage(StorageSettings(uri=str(tmp_path), cache_dir=tmp_path / "cache"))


def read_window(storage: ArrowStorage, model: str, version: int, since: float) -> pd.DataFrame:
    return PredictionLogReader(storage).window(model, version, since)


def test_rows_of_every_shape_become_columns() -> None:
    assert block_columns({"a": [1, 2], "b": [3, 4]}) == {"a": [1, 2], "b": [3, 4]}
    assert block_columns([{"a": 1, "b": 2}, {"a": 3, "b": 4}]) == {"a": [1, 3], "b": [2, 4]}
    assert block_columns([[1, 2], [3, 4]]) == {"x0": [1, 3], "x1": [2, 4]}
    assert prediction_score([0.2, 0.8]) == 0.8 and prediction_score(3.5) == 3.5
    assert prediction_score({"0": 0.3, "1": 0.7}) == 0.7


def test_sampled_rows_are_written_in_batches_and_read_back(
    storage: ArrowStorage, tmp_path: Path
) -> None:
    draws = itertools.cycle([0.1, 0.9])  # every other request sampled at rate 0.5

    async def scenario() -> PredictionLog:
        log = PredictionLog(
            storage, sample_rate=lambda _: 0.5, flush_s=60, draw=lambda: next(draws)
        )
        await log.start()
        for i in range(10):
            log.record("churn", 3, "primary", f"r{i}", {"x": [i, i]}, [[0.3, 0.7], [0.6, 0.4]])
        await log.stop()
        return log

    log = asyncio.run(scenario())
    assert log.written == 10 and log.dropped == 0  # 5 requests x 2 rows
    files = list((tmp_path / "predictions" / "model=churn" / "version=3").glob("*.parquet"))
    assert len(files) == 1  # one batch
    frame = read_window(storage, "churn", 3, since=0)
    assert sorted(frame["request_id"].unique()) == ["r0", "r2", "r4", "r6", "r8"]
    assert list(frame[PREDICTION][:2]) == [0.7, 0.4]
    assert set(frame.columns) >= {"ts", "variant", "x", "prediction"}
    assert read_window(storage, "churn", 4, since=0).empty


def test_a_full_buffer_drops_rows_instead_of_waiting(storage: ArrowStorage, tmp_path: Path) -> None:
    log = PredictionLog(storage, sample_rate=lambda _: 1.0, max_buffered_rows=5)
    for i in range(4):
        log.record("m", 1, "primary", f"r{i}", [[1.0], [2.0]], [1, 2])
    assert log.dropped == 4  # two requests buffered (4 rows), the next two dropped


def test_an_odd_request_is_skipped_not_the_batch(storage: ArrowStorage, tmp_path: Path) -> None:
    async def scenario() -> PredictionLog:
        log = PredictionLog(storage, sample_rate=lambda _: 1.0)
        log.record("m", 1, "primary", "ragged", {"a": [1, 2], "b": [1]}, [1, 2])
        log.record("m", 1, "primary", "fine", {"a": [1, 2], "b": [1, 2]}, [1, 2])
        await log.flush()
        return log

    log = asyncio.run(scenario())
    assert log.written == 2
    assert list(read_window(storage, "m", 1, since=0)["request_id"]) == ["fine", "fine"]


def test_a_flush_waits_for_a_background_write_in_progress(
    storage: ArrowStorage, tmp_path: Path
) -> None:
    class SlowLog(PredictionLog):
        def _write(self, buffer: Any) -> None:
            time.sleep(0.3)
            super()._write(buffer)

    async def scenario() -> int:
        log = SlowLog(storage, sample_rate=lambda _: 1.0, flush_s=0.01)
        await log.start()
        log.record("m", 1, "primary", "r", {"x": [1, 2]}, [0, 1])
        await asyncio.sleep(0.1)  # the background flush has taken the buffer, still writing
        await log.flush()  # what an evaluation on demand does first
        written = len(read_window(storage, "m", 1, since=0))
        await log.stop()
        return written

    assert asyncio.run(scenario()) == 2


def test_files_past_retention_are_pruned(storage: ArrowStorage, tmp_path: Path) -> None:
    directory = tmp_path / "predictions" / "model=m" / "version=1"
    directory.mkdir(parents=True)
    for written_ms in (1_000, 2_000, 9_000):
        (directory / f"{written_ms}-abc.parquet").write_bytes(b"")
    (directory / "notes.parquet").write_bytes(b"")  # not ours: left alone
    assert PredictionLogReader(storage).prune(before=5.0) == 2
    assert sorted(p.name for p in directory.iterdir()) == ["9000-abc.parquet", "notes.parquet"]


def test_requests_with_other_columns_share_a_batch(storage: ArrowStorage, tmp_path: Path) -> None:
    async def scenario() -> None:
        log = PredictionLog(storage, sample_rate=lambda _: 1.0)
        log.record("m", 1, "primary", "r1", {"a": [1.0]}, [0.5])
        log.record("m", 1, "primary", "r2", {"a": [2.0], "b": ["x"]}, [0.7])
        await log.flush()

    asyncio.run(scenario())
    frame = read_window(storage, "m", 1, since=0)
    assert frame["a"].tolist() == [1.0, 2.0] and frame["b"].tolist() == [None, "x"]


class OutageStorage:
    """The real local storage, out (503 `object_store_unavailable`) while `out` is set,
    as the S3 storage is when its server is down (tests/e2e/test_production.py)."""

    def __init__(self, storage: ArrowStorage) -> None:
        self.storage, self.out = storage, True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)

    def write_bytes(self, key: str, data: bytes) -> None:
        if self.out:
            raise Unavailable(ErrorCode.OBJECT_STORE_UNAVAILABLE, "out")
        self.storage.write_bytes(key, data)


def test_rows_wait_in_memory_for_a_store_outage_to_end(storage: ArrowStorage) -> None:
    flaky = OutageStorage(storage)

    async def scenario() -> PredictionLog:
        log = PredictionLog(
            flaky,  # type: ignore[arg-type]
            sample_rate=lambda _: 1.0,
            flush_s=60,
            batch_rows=1,
        )
        log.record("churn", 1, "primary", "r0", [[1.0]], [0])
        await log.flush()  # the store is out: kept
        assert log.written == 0 and log.dropped == 0
        log._wake.clear()  # as the background writer does before it flushes
        log.record("churn", 1, "primary", "r1", [[2.0]], [1])
        assert not log._wake.is_set()  # no write per request while the store is out
        flaky.out = False
        await log.flush()
        return log

    log = asyncio.run(scenario())
    assert log.written == 2 and log.dropped == 0
    frame = read_window(storage, "churn", 1, since=0)
    assert list(frame["request_id"]) == ["r0", "r1"]  # in the order they were served


def test_an_outage_longer_than_the_buffer_drops_and_counts(storage: ArrowStorage) -> None:
    flaky = OutageStorage(storage)

    async def scenario() -> PredictionLog:
        log = PredictionLog(
            flaky,  # type: ignore[arg-type]
            sample_rate=lambda _: 1.0,
            flush_s=60,
            max_buffered_rows=3,
        )
        for i in range(3):
            log.record("churn", 1, "primary", f"r{i}", [[1.0]], [0])
            await log.flush()
        log.record("churn", 1, "primary", "r3", [[1.0]], [0])  # over the cap: dropped
        flaky.out = False
        await log.flush()
        return log

    log = asyncio.run(scenario())
    assert (log.written, log.dropped) == (3, 1)
