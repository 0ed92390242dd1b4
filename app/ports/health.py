"""What the service reports on `/health`: components and their probes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class HealthStatus(StrEnum):
    """A component's health."""

    OK = "ok"
    DOWN = "down"
    DISABLED = "disabled"


@dataclass(frozen=True)
class ComponentHealth:
    """The result of probing one component."""

    name: str
    status: HealthStatus
    detail: str = ""
    latency_ms: float = 0.0
    required: bool = True


class HealthProbe(Protocol):
    """Something whose health the service reports."""

    name: str

    def probe(self) -> ComponentHealth:
        """Check the component now; never raise, report DOWN with a short reason instead."""
        ...
