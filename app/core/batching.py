"""Packing run data into as few store writes as the store's per-request limits allow.

Each write to the tracking store is a transaction (a disk sync on SQLite); one run with a
few params and tens of metrics should cost one write, not one per kind of entity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

P = TypeVar("P")
T = TypeVar("T")
M = TypeVar("M")


@dataclass(frozen=True)
class BatchLimits:
    """Per-request limits (MLflow's log_batch: 100 params, 100 tags, 1000 metrics, 1000 in all)."""

    params: int = 100
    tags: int = 100
    metrics: int = 1000
    total: int = 1000


@dataclass(frozen=True)
class Batch(Generic[P, T, M]):
    """One write's worth of params, tags and metrics."""

    params: Sequence[P]
    tags: Sequence[T]
    metrics: Sequence[M]


def pack(
    params: Sequence[P],
    tags: Sequence[T],
    metrics: Sequence[M],
    limits: BatchLimits = BatchLimits(),
) -> list[Batch[P, T, M]]:
    """Split the entities into the fewest batches within `limits`, keeping their order."""
    batches: list[Batch[P, T, M]] = []
    ip = it = im = 0
    while ip < len(params) or it < len(tags) or im < len(metrics):
        p = params[ip : ip + limits.params]
        t = tags[it : it + limits.tags]
        room = min(limits.metrics, limits.total - len(p) - len(t))
        m = metrics[im : im + room]
        batches.append(Batch(p, t, m))
        ip, it, im = ip + len(p), it + len(t), im + len(m)
    return batches
