"""Wire models of the health report."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.ports.health import ComponentHealth, HealthStatus


class ComponentOut(BaseModel):
    """One component's health."""

    name: str = Field(examples=["mlflow_store"])
    status: HealthStatus
    required: bool = Field(description="Whether readiness depends on it.")
    latency_ms: float
    detail: str = ""

    @classmethod
    def of(cls, health: ComponentHealth) -> ComponentOut:
        """Wire form of a probe result."""
        return cls(
            name=health.name,
            status=health.status,
            required=health.required,
            latency_ms=round(health.latency_ms, 2),
            detail=health.detail,
        )


class HealthReport(BaseModel):
    """Liveness and readiness, with each component's status."""

    live: bool = Field(description="The API process answers.")
    ready: bool = Field(description="Every required component is ok.")
    status: HealthStatus
    components: list[ComponentOut]
