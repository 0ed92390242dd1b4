"""What a diagnosis is made of: findings (kind, severity, numbers, evidence links) and the
evidence they are found in. The rules are in `app.core.diagnosis`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from app.core.audit import AuditEvent
from app.core.deployment import DeploymentView
from app.core.features import Freshness
from app.core.monitoring import Alert
from app.core.registry import ModelVersion


class Severity(StrEnum):
    """How much a finding matters (ordered)."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class FindingKind(StrEnum):
    """What a finding is about (see the module's table)."""

    FEATURE_DRIFT = "feature_drift"
    PREDICTION_DRIFT = "prediction_drift"
    QUALITY_GAP = "quality_gap"
    CANDIDATE_BETTER = "candidate_better"
    CANARY_ROLLED_BACK = "canary_rolled_back"
    ERROR_RATE = "error_rate"
    LATENCY = "latency"
    STALE_FEATURES = "stale_features"
    PROMOTION_REFUSED = "promotion_refused"
    NO_REFERENCE = "no_reference"
    DRIFT_AFTER_DEPLOY = "drift_after_deploy"
    DRIFT_AFTER_STALE_FEATURES = "drift_after_stale_features"


@dataclass(frozen=True)
class Finding:
    """One thing found, with its numbers and where its evidence is."""

    id: str
    kind: FindingKind
    severity: Severity
    title: str
    version: int | None
    subject: str | None
    started_at: float | None
    numbers: Mapping[str, Any] = field(default_factory=dict)
    links: tuple[str, ...] = ()
    related: tuple[str, ...] = ()


@dataclass(frozen=True)
class ViewFreshness:
    """A feature view as a diagnosis needs it."""

    name: str
    freshness: Freshness | None
    last_materialized: datetime | None
    ttl: timedelta | None


@dataclass(frozen=True)
class Evidence:
    """What the service holds about a model, for a window `[since, until]` (epoch s)."""

    model: str
    since: float
    until: float
    versions: tuple[ModelVersion, ...] = ()
    events: tuple[AuditEvent, ...] = ()
    deployment: DeploymentView | None = None
    drift: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    alerts: tuple[Alert, ...] = ()
    services: Mapping[str, tuple[ViewFreshness, ...]] = field(default_factory=dict)
    api_base: str = "/api/v1/ml"
