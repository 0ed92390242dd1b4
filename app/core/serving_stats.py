"""Per-variant serving statistics that merge: counts, a latency histogram, outcomes.

Ingress replicas count locally and ship increments in batches; the traffic actor merges
them. Windows (a canary step, a drain check) are the difference of two snapshots.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

# Latency buckets: upper bounds in milliseconds, log-spaced from 0.5 ms to ~2 min.
LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(0.5 * 1.25**i for i in range(56))


def latency_bucket(latency_ms: float) -> int:
    """The histogram bucket of a latency (the last bucket holds everything above)."""
    if latency_ms <= LATENCY_BOUNDS_MS[0]:
        return 0
    index = math.ceil(math.log(latency_ms / 0.5, 1.25))
    return min(index, len(LATENCY_BOUNDS_MS) - 1)


@dataclass(frozen=True)
class Outcomes:
    """Sufficient statistics of per-request outcomes (feedback): count, sum, sum of squares."""

    n: int = 0
    total: float = 0.0
    squares: float = 0.0

    def add(self, value: float) -> Outcomes:
        """With one more outcome."""
        return Outcomes(self.n + 1, self.total + value, self.squares + value * value)

    def merge(self, other: Outcomes) -> Outcomes:
        """Both together."""
        return Outcomes(self.n + other.n, self.total + other.total, self.squares + other.squares)

    def minus(self, earlier: Outcomes) -> Outcomes:
        """What came after `earlier`."""
        return Outcomes(
            self.n - earlier.n, self.total - earlier.total, self.squares - earlier.squares
        )

    @property
    def mean(self) -> float | None:
        """The mean outcome (None without outcomes)."""
        return self.total / self.n if self.n else None

    @property
    def variance(self) -> float:
        """The sample variance (0 with fewer than two outcomes)."""
        if self.n < 2:
            return 0.0
        return max(0.0, (self.squares - self.total * self.total / self.n) / (self.n - 1))


@dataclass(frozen=True)
class VariantStats:
    """What one variant has served."""

    requests: int = 0
    errors: int = 0
    latency: tuple[int, ...] = field(default_factory=lambda: (0,) * len(LATENCY_BOUNDS_MS))
    outcomes: Outcomes = field(default_factory=Outcomes)
    last_request_at: float = 0.0

    def merge(self, other: VariantStats) -> VariantStats:
        """Both together."""
        return VariantStats(
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            latency=tuple(a + b for a, b in zip(self.latency, other.latency, strict=True)),
            outcomes=self.outcomes.merge(other.outcomes),
            last_request_at=max(self.last_request_at, other.last_request_at),
        )

    def minus(self, earlier: VariantStats) -> VariantStats:
        """The window since `earlier` (a snapshot of the same variant)."""
        return VariantStats(
            requests=self.requests - earlier.requests,
            errors=self.errors - earlier.errors,
            latency=tuple(a - b for a, b in zip(self.latency, earlier.latency, strict=True)),
            outcomes=self.outcomes.minus(earlier.outcomes),
            last_request_at=self.last_request_at,
        )

    def no_later_than(self, stored: VariantStats) -> VariantStats:
        """This snapshot, moved back to `stored` where it is ahead of it.

        Cumulative stats only grow, so a snapshot ahead of the stored stats means the
        stats it was taken from were lost (the traffic actor restarted between two stores):
        a window from it would count the lost requests as negative. Counts take the
        smaller of each; outcomes the earlier of the two.
        """
        return VariantStats(
            requests=min(self.requests, stored.requests),
            errors=min(self.errors, stored.errors),
            latency=tuple(min(a, b) for a, b in zip(self.latency, stored.latency, strict=True)),
            outcomes=self.outcomes if self.outcomes.n <= stored.outcomes.n else stored.outcomes,
            last_request_at=min(self.last_request_at, stored.last_request_at),
        )

    def with_outcome(self, value: float) -> VariantStats:
        """With one more feedback outcome."""
        return replace(self, outcomes=self.outcomes.add(value))

    @property
    def error_rate(self) -> float:
        """Errors per request (0 without requests)."""
        return self.errors / self.requests if self.requests else 0.0

    def percentile_ms(self, q: float) -> float | None:
        """The latency below which a fraction `q` of requests fall (bucket upper bound)."""
        total = sum(self.latency)
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for count, bound in zip(self.latency, LATENCY_BOUNDS_MS, strict=True):
            seen += count
            if seen >= rank:
                return bound
        return LATENCY_BOUNDS_MS[-1]


def one_request(latency_ms: float, ok: bool, at: float) -> VariantStats:
    """The stats of a single request."""
    counts = [0] * len(LATENCY_BOUNDS_MS)
    counts[latency_bucket(latency_ms)] = 1
    return VariantStats(1, 0 if ok else 1, tuple(counts), Outcomes(), at)


def no_later_than(
    snapshots: Mapping[str, VariantStats], stored: Mapping[str, VariantStats]
) -> dict[str, VariantStats]:
    """Per variant, each snapshot no later than the stored stats (see
    `VariantStats.no_later_than`; a variant never stored counts as empty)."""
    return {
        name: value.no_later_than(stored.get(name, VariantStats()))
        for name, value in snapshots.items()
    }


def merge_all(
    stats: Mapping[str, VariantStats], more: Mapping[str, VariantStats]
) -> dict[str, VariantStats]:
    """Per-variant merge of two maps."""
    merged = dict(stats)
    for name, value in more.items():
        merged[name] = merged[name].merge(value) if name in merged else value
    return merged
