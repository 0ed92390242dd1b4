"""Routing tables: which model versions serve a model's traffic, and in what shares.

The ingress holds a cached copy of each table and decides every request locally: a
request key is hashed with the table's salt into one of 10,000 buckets, and the buckets
are split by the variants' weights, so the same key always reaches the same variant on
every replica and after restarts (the salt is stored with the table). Requests without a
key are spread at random in the same proportions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from app.errors import InvalidInput

BUCKETS = 10_000


class Strategy(StrEnum):
    """How a deployment shares traffic between versions."""

    REPLACE = "replace"
    CANARY = "canary"
    AB = "ab"
    SHADOW = "shadow"


class Role(StrEnum):
    """A variant's part in the deployment."""

    PRIMARY = "primary"  # the version that held the traffic before (or alone)
    CANDIDATE = "candidate"  # a canary, or an arm of an A/B test
    SHADOW = "shadow"  # sees mirrored requests; its answers are discarded


class Backend(StrEnum):
    """Where a variant's model runs."""

    RAY = "ray"  # the service's model server (MLflow pyfunc on Ray Serve)
    TRITON = "triton"  # NVIDIA Triton Inference Server (exported TorchScript)
    VLLM = "vllm"  # an LLM on vLLM (Ray Serve LLM); answers the OpenAI routes


@dataclass(frozen=True)
class Variant:
    """One version in a routing table."""

    name: str
    version: int
    weight: float
    role: Role
    backend: Backend = Backend.RAY


@dataclass(frozen=True)
class RoutingTable:
    """A model's routing: the serving variants and their weights (percent, summing to
    100), and a shadow variant that receives a copy of `shadow_percent` of requests."""

    model: str
    revision: int
    salt: str
    strategy: Strategy
    variants: tuple[Variant, ...]
    shadow_percent: float = 0.0
    updated_at: datetime | None = None
    experiment: str = field(default="")

    def serving(self) -> tuple[Variant, ...]:
        """The variants that answer requests."""
        return tuple(v for v in self.variants if v.role is not Role.SHADOW and v.weight > 0)

    def shadow(self) -> Variant | None:
        """The shadow variant, if any."""
        return next((v for v in self.variants if v.role is Role.SHADOW), None)

    def variant(self, name: str) -> Variant | None:
        """A variant by name."""
        return next((v for v in self.variants if v.name == name), None)

    def choose(self, key: str | None, draw: float) -> Variant:
        """The variant that answers a request: by the key's bucket, else by `draw` (a
        uniform number in [0, 1))."""
        point = bucket(key, self.salt) if key is not None else int(draw * BUCKETS)
        return pick(self.serving(), point)

    def mirrors(self, key: str | None, draw: float) -> bool:
        """Whether the request is copied to the shadow variant."""
        if self.shadow() is None or self.shadow_percent <= 0:
            return False
        point = bucket(key, self.salt + ":shadow") if key is not None else int(draw * BUCKETS)
        return point < self.shadow_percent / 100 * BUCKETS


def bucket(key: str, salt: str) -> int:
    """The key's bucket in [0, 10000): stable across processes and restarts."""
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def pick(variants: Sequence[Variant], point: int) -> Variant:
    """The variant whose share of the buckets holds `point`."""
    if not variants:
        raise ValueError("no serving variant")
    total = sum(v.weight for v in variants)
    edge = 0.0
    for variant in variants:
        edge += variant.weight / total * BUCKETS
        if point < edge:
            return variant
    return variants[-1]


def check_weights(variants: Sequence[Variant]) -> None:
    """Serving weights are non-negative, sum to 100, and names are unique.

    Raises:
        InvalidInput: they do not (`variants`).
    """
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise InvalidInput.for_field("variants", "variant names must be unique")
    serving = [v for v in variants if v.role is not Role.SHADOW]
    if any(v.weight < 0 for v in serving):
        raise InvalidInput.for_field("variants", "weights must not be negative")
    if abs(sum(v.weight for v in serving) - 100.0) > 1e-6:
        raise InvalidInput.for_field("variants", "serving weights must sum to 100")
