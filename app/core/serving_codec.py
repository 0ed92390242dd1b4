"""Routing tables, rollouts and serving stats as plain JSON, for the service database."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from app.core.canary import CanaryPlan, Phase, Rollout
from app.core.routing import Backend, Role, RoutingTable, Strategy, Variant
from app.core.serving_stats import Outcomes, VariantStats


def table_as_dict(table: RoutingTable) -> dict[str, Any]:
    """Plain JSON form of a routing table."""
    return {
        "model": table.model,
        "revision": table.revision,
        "salt": table.salt,
        "strategy": table.strategy.value,
        "variants": [
            {
                "name": v.name,
                "version": v.version,
                "weight": v.weight,
                "role": v.role.value,
                "backend": v.backend.value,
            }
            for v in table.variants
        ],
        "shadow_percent": table.shadow_percent,
        "updated_at": table.updated_at.isoformat() if table.updated_at else None,
        "experiment": table.experiment,
    }


def table_from_dict(data: dict[str, Any]) -> RoutingTable:
    """The table stored by `table_as_dict`."""
    return RoutingTable(
        model=data["model"],
        revision=int(data["revision"]),
        salt=data["salt"],
        strategy=Strategy(data["strategy"]),
        variants=tuple(
            Variant(
                v["name"],
                int(v["version"]),
                float(v["weight"]),
                Role(v["role"]),
                Backend(v.get("backend", "ray")),
            )
            for v in data["variants"]
        ),
        shadow_percent=float(data.get("shadow_percent", 0.0)),
        updated_at=datetime.fromisoformat(data["updated_at"]) if data.get("updated_at") else None,
        experiment=data.get("experiment", ""),
    )


def stats_as_dict(stats: VariantStats) -> dict[str, Any]:
    """Plain JSON form of a variant's stats."""
    return {
        "requests": stats.requests,
        "errors": stats.errors,
        "latency": list(stats.latency),
        "outcomes": [stats.outcomes.n, stats.outcomes.total, stats.outcomes.squares],
        "last_request_at": stats.last_request_at,
    }


def stats_from_dict(data: dict[str, Any]) -> VariantStats:
    """The stats stored by `stats_as_dict`."""
    n, total, squares = data["outcomes"]
    return VariantStats(
        requests=int(data["requests"]),
        errors=int(data["errors"]),
        latency=tuple(int(x) for x in data["latency"]),
        outcomes=Outcomes(int(n), float(total), float(squares)),
        last_request_at=float(data["last_request_at"]),
    )


def rollout_as_dict(rollout: Rollout) -> dict[str, Any]:
    """Plain JSON form of a rollout."""
    plan = asdict(rollout.plan)
    plan["steps"] = list(rollout.plan.steps)
    return {
        "model": rollout.model,
        "baseline": rollout.baseline,
        "canary": rollout.canary,
        "plan": plan,
        "step_index": rollout.step_index,
        "step_started_at": rollout.step_started_at,
        "phase": rollout.phase.value,
        "baseline_snapshot": stats_as_dict(rollout.baseline_snapshot),
        "canary_snapshot": stats_as_dict(rollout.canary_snapshot),
        "started_by": rollout.started_by,
        "reason": rollout.reason,
    }


def rollout_from_dict(data: dict[str, Any]) -> Rollout:
    """The rollout stored by `rollout_as_dict`."""
    plan = dict(data["plan"])
    plan["steps"] = tuple(float(s) for s in plan["steps"])
    return Rollout(
        model=data["model"],
        baseline=data["baseline"],
        canary=data["canary"],
        plan=CanaryPlan(**plan),
        step_index=int(data["step_index"]),
        step_started_at=float(data["step_started_at"]),
        phase=Phase(data["phase"]),
        baseline_snapshot=stats_from_dict(data["baseline_snapshot"]),
        canary_snapshot=stats_from_dict(data["canary_snapshot"]),
        started_by=data["started_by"],
        reason=data.get("reason", ""),
    )
