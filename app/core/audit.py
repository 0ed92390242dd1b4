"""An append-only, hash-chained audit log of registry events, per model.

Each event's hash covers its content and the previous event's hash, so changing,
removing or reordering any stored event breaks verification at that event. Replaying
the stage events answers which version held each stage at any past time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from app.core.lifecycle import ModelStage

GENESIS_HASH = "0" * 64


class EventType(StrEnum):
    """What happened."""

    MODEL_CREATED = "model_created"
    VERSION_REGISTERED = "version_registered"
    STAGE_CHANGED = "stage_changed"
    PROMOTION_REFUSED = "promotion_refused"
    APPROVAL_RECORDED = "approval_recorded"
    POLICY_CHANGED = "policy_changed"
    DEPLOYED = "deployed"
    UNDEPLOYED = "undeployed"
    ROLLOUT_STEP = "rollout_step"
    ROLLOUT_COMPLETED = "rollout_completed"
    ROLLOUT_ROLLED_BACK = "rollout_rolled_back"


# Events that other actors (traffic) append to a model's log through the registry.
SERVING_EVENTS = frozenset(
    {
        EventType.DEPLOYED,
        EventType.UNDEPLOYED,
        EventType.ROLLOUT_STEP,
        EventType.ROLLOUT_COMPLETED,
        EventType.ROLLOUT_ROLLED_BACK,
    }
)


@dataclass(frozen=True)
class AuditEvent:
    """One event: who did what, when, with which evidence; chained by hash."""

    model: str
    seq: int
    at: datetime
    actor: str
    type: EventType
    version: int | None
    payload: Mapping[str, Any]
    prev_hash: str
    hash: str


def canonical(value: Any) -> str:
    """The JSON text hashed for an event: sorted keys, no spaces, ASCII."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def event_hash(
    prev_hash: str,
    model: str,
    seq: int,
    at: datetime,
    actor: str,
    type: EventType,
    version: int | None,
    payload: Mapping[str, Any],
) -> str:
    """The hash of an event's content chained to the previous hash."""
    body = canonical(
        {
            "prev": prev_hash,
            "model": model,
            "seq": seq,
            "at": at.isoformat(),
            "actor": actor,
            "type": type.value,
            "version": version,
            "payload": payload,
        }
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def next_event(
    tail: AuditEvent | None,
    model: str,
    at: datetime,
    actor: str,
    type: EventType,
    version: int | None,
    payload: Mapping[str, Any],
) -> AuditEvent:
    """The event that follows `tail` (None: the first of the model's chain).

    The payload must be plain JSON (it is normalised through JSON here, so that what is
    hashed is exactly what is stored and read back).
    """
    seq = 1 if tail is None else tail.seq + 1
    prev = GENESIS_HASH if tail is None else tail.hash
    plain = json.loads(canonical(payload))
    digest = event_hash(prev, model, seq, at, actor, type, version, plain)
    return AuditEvent(model, seq, at, actor, type, version, plain, prev, digest)


@dataclass(frozen=True)
class ChainVerification:
    """The result of re-computing a chain."""

    valid: bool
    events_checked: int
    broken_at: int | None = None
    reason: str = ""


def verify(events: Sequence[AuditEvent]) -> ChainVerification:
    """Re-compute every hash and link, in sequence order; report the first broken event."""
    prev = GENESIS_HASH
    for expected_seq, event in enumerate(sorted(events, key=lambda e: e.seq), start=1):
        problem = _problem(event, expected_seq, prev)
        if problem:
            return ChainVerification(False, expected_seq - 1, event.seq, problem)
        prev = event.hash
    return ChainVerification(True, len(events))


def _problem(event: AuditEvent, expected_seq: int, prev: str) -> str:
    if event.seq != expected_seq:
        return f"event {expected_seq} is missing (found {event.seq})"
    if event.prev_hash != prev:
        return "its link to the previous event does not match"
    recomputed = event_hash(
        event.prev_hash,
        event.model,
        event.seq,
        event.at,
        event.actor,
        event.type,
        event.version,
        event.payload,
    )
    if recomputed != event.hash:
        return "its content does not match its hash"
    return ""


def stages_as_of(events: Sequence[AuditEvent], at: datetime) -> dict[ModelStage, list[int]]:
    """Which versions held each stage at `at`, by replaying registrations and stage changes."""
    stage_of: dict[int, ModelStage] = {}
    for event in sorted(events, key=lambda e: e.seq):
        if event.at > at or event.version is None:
            continue
        if event.type is EventType.VERSION_REGISTERED:
            stage_of[event.version] = ModelStage.DEVELOPMENT
        elif event.type is EventType.STAGE_CHANGED:
            stage_of[event.version] = ModelStage(event.payload["to"])
    held: dict[ModelStage, list[int]] = {stage: [] for stage in ModelStage}
    for version, stage in sorted(stage_of.items()):
        held[stage].append(version)
    return held
