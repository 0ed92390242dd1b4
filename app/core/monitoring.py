"""Monitoring decisions: a model's policy, its drift alerts and when they fire, resolve,
are delivered and start a retraining job.

An alert is keyed by (model, version): it opens when a window shows drift, stays open (and
is updated, never re-sent) while later windows still drift, and resolves when a window of
enough samples shows none. A drift that comes back within the cooldown after resolving
reopens the same alert silently; later, it opens a new one (sent again). Retraining starts
only with a newly opened alert, and at most `max_jobs` times per `period_s`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from app.core.drift import FeatureDrift, Thresholds


class AlertState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class Delivery(StrEnum):
    NONE = "none"  # no webhook configured
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class RetrainPolicy:
    """Submit the model's training job when drift opens an alert."""

    spec: Mapping[str, Any]  # a TrainingSpec, as the API takes it
    max_jobs: int = 1
    period_s: float = 86_400.0


@dataclass(frozen=True)
class MonitoringPolicy:
    """How one model is watched."""

    window_s: float = 3600.0  # each evaluation compares the last window_s of traffic
    thresholds: Thresholds = field(default_factory=Thresholds)
    cooldown_s: float = 3600.0
    sample_rate: float = 1.0  # share of requests written to the prediction log
    webhook_url: str | None = None
    retrain: RetrainPolicy | None = None


@dataclass(frozen=True)
class Window:
    """The traffic an evaluation covered."""

    start: float
    end: float
    rows: int


@dataclass(frozen=True)
class Alert:
    """A drift alert of one version."""

    id: str
    model: str
    version: int
    state: AlertState
    features: tuple[str, ...]  # every feature seen drifting while open
    scores: Mapping[str, Mapping[str, Any]]  # the latest window's, per drifted feature
    window: Window
    opened_at: float
    last_seen_at: float
    resolved_at: float | None = None
    occurrences: int = 1  # windows that showed the drift
    delivery: Delivery = Delivery.NONE
    delivery_detail: str = ""
    retraining_job: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["features"] = list(self.features)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        fields = dict(data)
        fields["state"] = AlertState(fields["state"])
        fields["delivery"] = Delivery(fields["delivery"])
        fields["features"] = tuple(fields["features"])
        fields["window"] = Window(**fields["window"])
        return cls(**fields)


@dataclass(frozen=True)
class Decision:
    """What an evaluation changes: the alert to store (None: nothing), whether to send it,
    whether to start retraining."""

    alert: Alert | None
    deliver: bool = False
    retrain: bool = False


def scores_of(results: Iterable[FeatureDrift]) -> dict[str, dict[str, Any]]:
    """The numbers an alert carries for each drifted feature."""
    return {
        r.feature: {
            "psi": r.psi,
            "js_distance": r.js_distance,
            "ks_statistic": r.ks_statistic,
            "wasserstein": r.wasserstein,
            "p_value": r.p_value,
            "samples": r.samples,
            "reason": r.reason,
        }
        for r in results
        if r.drifted
    }


def assess(
    model: str,
    version: int,
    latest: Alert | None,
    results: Sequence[FeatureDrift],
    window: Window,
    policy: MonitoringPolicy,
    now: float,
    new_id: str,
    recent_retrains: Sequence[float] = (),
) -> Decision:
    """The change one evaluation of a version makes to its alerts.

    Args:
        model, version: what was evaluated.
        latest: the version's most recent alert, open or resolved (None: never alerted).
        results: this window's comparison, per feature.
        window: the window compared.
        policy: the model's monitoring policy.
        now: the evaluation's time.
        new_id: the id a newly opened alert gets.
        recent_retrains: when earlier retraining jobs of the model were submitted.
    """
    drifted = [r for r in results if r.drifted]
    conclusive = any(r.samples >= policy.thresholds.min_samples for r in results)
    if not drifted:
        if latest is not None and latest.state is AlertState.OPEN and conclusive:
            return Decision(replace(latest, state=AlertState.RESOLVED, resolved_at=now))
        return Decision(None)
    scores = scores_of(drifted)
    names = tuple(r.feature for r in drifted)
    if latest is not None and latest.state is AlertState.OPEN:
        features = latest.features + tuple(n for n in names if n not in latest.features)
        return Decision(_seen(latest, features, scores, window, now))
    if (
        latest is not None
        and latest.resolved_at is not None
        and now - latest.resolved_at < policy.cooldown_s
    ):
        reopened = replace(latest, state=AlertState.OPEN, resolved_at=None)
        features = latest.features + tuple(n for n in names if n not in latest.features)
        return Decision(_seen(reopened, features, scores, window, now))
    alert = Alert(
        id=new_id,
        model=model,
        version=version,
        state=AlertState.OPEN,
        features=names,
        scores=scores,
        window=window,
        opened_at=now,
        last_seen_at=now,
        delivery=Delivery.PENDING if policy.webhook_url else Delivery.NONE,
    )
    return Decision(
        alert, deliver=bool(policy.webhook_url), retrain=may_retrain(policy, now, recent_retrains)
    )


def _seen(
    alert: Alert,
    features: tuple[str, ...],
    scores: Mapping[str, Mapping[str, Any]],
    window: Window,
    now: float,
) -> Alert:
    return replace(
        alert,
        features=features,
        scores=scores,
        window=window,
        last_seen_at=now,
        occurrences=alert.occurrences + 1,
    )


def may_retrain(policy: MonitoringPolicy, now: float, recent: Sequence[float]) -> bool:
    """Whether a retraining job may start now (debounced: at most `max_jobs` per period)."""
    if policy.retrain is None:
        return False
    in_period = [at for at in recent if now - at < policy.retrain.period_s]
    return len(in_period) < policy.retrain.max_jobs


# -- webhooks ------------------------------------------------------------------------------

SIGNATURE_HEADER = "X-MLService-Signature"
TIMESTAMP_HEADER = "X-MLService-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The webhook signature: HMAC-SHA256 over `<timestamp>.<body>`, as `sha256=<hex>`
    (the timestamp is signed so that a captured delivery cannot be replayed later)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    now: float | None = None,
    tolerance_s: float = 300.0,
) -> bool:
    """Whether `signature` is this body's (constant-time) and the timestamp is within
    `tolerance_s` of `now` (a replayed old delivery fails); what a receiver does."""
    import time

    try:
        age = abs((time.time() if now is None else now) - float(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


# -- stored form ---------------------------------------------------------------------------


def policy_as_dict(policy: MonitoringPolicy) -> dict[str, Any]:
    """Plain JSON form of a policy (the service database, the API)."""
    data = asdict(policy)
    if policy.retrain is not None:
        data["retrain"]["spec"] = dict(policy.retrain.spec)
    return data


def policy_from_dict(data: Mapping[str, Any]) -> MonitoringPolicy:
    """The policy stored by `policy_as_dict`."""
    fields = dict(data)
    fields["thresholds"] = Thresholds(**fields.get("thresholds", {}))
    if fields.get("retrain") is not None:
        fields["retrain"] = RetrainPolicy(**fields["retrain"])
    return MonitoringPolicy(**fields)
