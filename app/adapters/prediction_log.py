"""The prediction log: a sampled record of what each version was asked and answered,
written off the hot path in batches as parquet files in the storage (`Storage`).

`record` only appends to an in-memory buffer (sampling decided there); a background task
writes the buffer every `flush_s` seconds, or sooner once it holds `batch_rows` rows, on a
worker thread. When the disk cannot keep up the buffer is capped: rows beyond
`max_buffered_rows` are dropped and counted, never waited for.

Layout (hive-style, so pandas/pyarrow/DuckDB read it as one dataset):
    predictions/model=<name>/version=<n>/<epoch ms>-[<writer>-]<random>.parquet
(`writer`: which process wrote it, e.g. the Ray node of an ingress replica)
with columns `ts`, `request_id`, `variant`, one column per input feature (as sent),
`__prediction__` (the row's score: a classifier's last-class probability or a value) and
`prediction` (the raw output, as JSON).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from app.adapters.storage import parquet_bytes
from app.core.drift import PREDICTION
from app.core.model_io import RowBlock
from app.errors import Unavailable
from app.ports.storage import Storage

PREFIX = "predictions"

log = logging.getLogger(__name__)


def prediction_score(value: Any) -> Any:
    """One number (or label) per prediction: the last class's probability of a
    probability vector (a list, or a mapping of class to probability), the value of a
    scalar."""
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return value[-1] if value else None
    return value


def block_columns(block: RowBlock) -> dict[str, list[Any]]:
    """A request's rows as columns (positional rows become x0, x1, ...)."""
    if isinstance(block, dict):
        return {str(name): list(values) for name, values in block.items()}
    if block and isinstance(block[0], dict):
        names = list(block[0])
        return {name: [row.get(name) for row in block] for name in names}
    width = len(block[0]) if block else 0
    return {f"x{i}": [row[i] for row in block] for i in range(width)}  # type: ignore[index]


_MAX_BACKOFF_S = 30.0  # the longest wait between writes while the store is out


class PredictionLog:
    """Buffers sampled predictions and writes them in batches.

    Args:
        storage: where the log's files go (under `predictions/`).
        sample_rate: the share of a model's requests recorded (0 records nothing).
        flush_s: the longest a row waits in memory.
        batch_rows: a buffer this big is written at once.
        max_buffered_rows: beyond this, rows are dropped (and counted).
        draw: uniform random numbers in [0, 1) (injectable for tests).
    """

    def __init__(
        self,
        storage: Storage,
        sample_rate: Callable[[str], float],
        flush_s: float = 2.0,
        batch_rows: int = 5000,
        max_buffered_rows: int = 200_000,
        draw: Callable[[], float] = random.random,
        writer: str = "",
    ) -> None:
        self._storage = storage
        self._writer = f"{writer}-" if writer else ""
        self.sample_rate = sample_rate
        self._flush_s = flush_s
        self._batch_rows = batch_rows
        self._max_buffered_rows = max_buffered_rows
        self._draw = draw
        self._buffer: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        self._buffered = 0
        self.dropped = 0
        self.written = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._writing: asyncio.Lock | None = None
        # after an outage of the store, the next attempt waits (doubling up to 30 s)
        self._retry_at = 0.0
        self._backoff = flush_s

    def record(
        self,
        model: str,
        version: int,
        variant: str,
        request_id: str,
        block: RowBlock,
        predictions: Sequence[Any],
    ) -> None:
        """Remember one request's rows (if sampled). Never blocks, never raises."""
        rate = self.sample_rate(model)
        if rate <= 0 or (rate < 1 and self._draw() >= rate):
            return
        try:
            rows = len(predictions)
            if self._buffered + rows > self._max_buffered_rows:
                self.dropped += rows
                return
            self._buffer[(model, version)].append(
                {
                    "ts": time.time(),
                    "request_id": request_id,
                    "variant": variant,
                    "columns": block_columns(block),
                    "predictions": list(predictions),
                }
            )
            self._buffered += rows
            if self._buffered >= self._batch_rows and time.monotonic() >= self._retry_at:
                self._wake.set()
        except Exception:  # a malformed block must never fail the prediction
            log.warning("prediction not logged", exc_info=True)

    async def start(self) -> None:
        """Start the background writer."""
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Write what is buffered and stop (what the store cannot take now is dropped and
        counted)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        await self.flush()
        if self._buffered:
            self.dropped += self._buffered
            log.warning("%d predictions not logged at stop: the store is out", self._buffered)
            self._buffer, self._buffered = defaultdict(list), 0

    async def flush(self) -> None:
        """Write the buffer now (on a worker thread); returns once everything recorded
        before the call is stored (or kept for later, when the store is out), also what a
        background write was still writing."""
        if self._writing is None:
            self._writing = asyncio.Lock()
        async with self._writing:
            buffer, self._buffer, self._buffered = self._buffer, defaultdict(list), 0
            if buffer:
                unwritten = await asyncio.to_thread(self._write, buffer)
                self._keep(unwritten)

    def _keep(self, unwritten: dict[tuple[str, int], list[dict[str, Any]]]) -> None:
        """Put what the store could not take (an outage) back in front of the buffer, to
        be written when it returns; up to `max_buffered_rows`, then dropped and counted.
        While the store is out, attempts back off (no rebuild of every batch per request)."""
        if not unwritten:
            self._retry_at, self._backoff = 0.0, self._flush_s
            return
        self._backoff = min(self._backoff * 2, _MAX_BACKOFF_S)
        self._retry_at = time.monotonic() + self._backoff
        for key, requests in unwritten.items():
            rows = sum(len(r["predictions"]) for r in requests)
            if self._buffered + rows > self._max_buffered_rows:
                self.dropped += rows
                log.warning("%d predictions of %s v%d dropped: store out, buffer full", rows, *key)
                continue
            self._buffer[key][:0] = requests
            self._buffered += rows

    async def _run(self) -> None:
        while True:
            try:
                wait_s = max(self._flush_s, self._retry_at - time.monotonic())
                try:
                    await asyncio.wait_for(self._wake.wait(), wait_s)
                except TimeoutError:
                    pass
                self._wake.clear()
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("prediction log write failed")

    def _write(
        self, buffer: dict[tuple[str, int], list[dict[str, Any]]]
    ) -> dict[tuple[str, int], list[dict[str, Any]]]:
        """Write each version's batch; the batches the store was out for, to keep."""
        unwritten: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for (model, version), requests in buffer.items():
            try:  # one version's odd batch never costs the others theirs
                frame = log_frame(requests)
                if frame.empty:
                    continue
                name = f"{int(time.time() * 1000)}-{self._writer}{uuid.uuid4().hex[:8]}.parquet"
                key = f"{PREFIX}/model={model}/version={version}/{name}"
                self._storage.write_bytes(key, parquet_bytes(frame))
            except Unavailable:
                unwritten[(model, version)] = requests
                log.warning("prediction log: store unavailable, %s v%d kept", model, version)
                continue
            except Exception:
                self.dropped += sum(len(r["predictions"]) for r in requests)
                log.exception("predictions of %s v%d not logged (dropped)", model, version)
                continue
            self.written += len(frame)
            log.debug("logged %d predictions of %s v%d", len(frame), model, version)
        return unwritten


def log_frame(requests: list[dict[str, Any]]) -> pd.DataFrame:
    """One frame of every buffered request (plain lists joined, one DataFrame built: the
    writer holds the GIL as briefly as it can, beside the requests being served)."""
    meta: dict[str, list[Any]] = {"ts": [], "request_id": [], "variant": []}
    features: dict[str, list[Any]] = {}
    scores: list[Any] = []
    raw: list[str] = []
    total = 0
    for request in requests:
        rows = len(request["predictions"])
        columns = request["columns"]
        odd = [name for name, values in columns.items() if len(values) != rows]
        if odd:  # one odd request must not cost the batch
            log.warning(
                "request %s not logged: columns %s do not match", request["request_id"], odd
            )
            continue
        for name in columns:
            features.setdefault(name, [None] * total)
        for name, values in features.items():
            values.extend(columns.get(name, [None] * rows))
        meta["ts"].extend([request["ts"]] * rows)
        meta["request_id"].extend([request["request_id"]] * rows)
        meta["variant"].extend([request["variant"]] * rows)
        scores.extend(prediction_score(p) for p in request["predictions"])
        raw.extend(json.dumps(p) for p in request["predictions"])
        total += rows
    if not total:
        return pd.DataFrame()
    return pd.DataFrame({**meta, **features, PREDICTION: scores, "prediction": raw})


class PredictionLogReader:
    """`PredictionWindows`: the log as monitoring reads it, from the storage.

    Args:
        storage: where the log's files are (under `predictions/`).
    """

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def models(self) -> list[str]:
        """See `PredictionWindows.models`."""
        names = self._storage.children(PREFIX)
        return sorted(n.removeprefix("model=") for n in names if n.startswith("model="))

    def versions(self, model: str) -> list[int]:
        """See `PredictionWindows.versions`."""
        names = (n.removeprefix("version=") for n in self._storage.children(_model(model)))
        return sorted(int(name) for name in names if name.isdigit())

    def first(self, model: str, version: int, rows: int) -> pd.DataFrame:
        """See `PredictionWindows.first` (files read in the order they were written)."""
        frames, total = [], 0
        stored = self._storage.files(f"{_model(model)}/version={version}")
        for file in sorted(stored, key=lambda f: (_written_ms(f.key) or 0, f.key)):
            if _written_ms(file.key) is None:
                continue
            frame = pd.read_parquet(io.BytesIO(self._storage.read_bytes(file.key)))
            frames.append(frame)
            total += len(frame)
            if total >= rows:
                break
        if not frames:
            return pd.DataFrame()
        joined = pd.concat(frames, ignore_index=True).sort_values("ts", kind="stable")
        return joined.head(rows).reset_index(drop=True)

    def window(
        self, model: str, version: int, since: float, until: float | None = None
    ) -> pd.DataFrame:
        """See `PredictionWindows.window` (files written before `since` are skipped by
        name)."""
        frames = []
        for stored in self._storage.files(f"{_model(model)}/version={version}"):
            stamp = _written_ms(stored.key)
            if stamp is None or stamp < since * 1000:
                continue  # not ours, or written before the window
            frames.append(pd.read_parquet(io.BytesIO(self._storage.read_bytes(stored.key))))
        if not frames:
            return pd.DataFrame()
        frame = pd.concat(frames, ignore_index=True)
        keep = frame["ts"] >= since
        if until is not None:
            keep &= frame["ts"] < until
        return frame[keep].reset_index(drop=True)

    def prune(self, before: float) -> int:
        """See `PredictionWindows.prune`."""
        removed = 0
        for stored in self._storage.files(PREFIX):
            written_ms = _written_ms(stored.key)
            if written_ms is not None and written_ms < before * 1000:
                self._storage.delete(stored.key)
                removed += 1
        return removed


def _model(model: str) -> str:
    return f"{PREFIX}/model={model}"


def _written_ms(key: str) -> int | None:
    """When the log wrote a file, from its name (None: not one of the log's files)."""
    name = key.rsplit("/", 1)[-1]
    stamp = name.split("-", 1)[0]
    return int(stamp) if stamp.isdigit() and name.endswith(".parquet") else None
