from dataclasses import replace
from datetime import UTC, datetime, timedelta

from app.core.audit import (
    GENESIS_HASH,
    AuditEvent,
    EventType,
    next_event,
    stages_as_of,
    verify,
)
from app.core.lifecycle import ModelStage

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def history() -> list[AuditEvent]:
    steps = [
        (EventType.MODEL_CREATED, None, {}),
        (EventType.VERSION_REGISTERED, 1, {"semver": "1.0.0"}),
        (EventType.STAGE_CHANGED, 1, {"from": "development", "to": "staging"}),
        (EventType.STAGE_CHANGED, 1, {"from": "staging", "to": "production"}),
        (EventType.VERSION_REGISTERED, 2, {"semver": "1.1.0"}),
        (EventType.PROMOTION_REFUSED, 2, {"checks": [{"gate": "metrics_baseline"}]}),
        (EventType.STAGE_CHANGED, 2, {"from": "development", "to": "staging"}),
        (EventType.STAGE_CHANGED, 2, {"from": "staging", "to": "production"}),
        (EventType.STAGE_CHANGED, 1, {"from": "production", "to": "archived"}),
    ]
    events: list[AuditEvent] = []
    for i, (kind, version, payload) in enumerate(steps):
        tail = events[-1] if events else None
        events.append(
            next_event(tail, "churn", T0 + timedelta(hours=i), "alice", kind, version, payload)
        )
    return events


def test_a_fresh_chain_verifies() -> None:
    events = history()
    assert events[0].prev_hash == GENESIS_HASH and events[0].seq == 1
    assert all(b.prev_hash == a.hash for a, b in zip(events, events[1:], strict=False))
    result = verify(events)
    assert result.valid and result.events_checked == len(events)


def test_any_change_breaks_the_chain_at_that_event() -> None:
    events = history()
    tampered = list(events)
    tampered[4] = replace(events[4], payload={"semver": "9.9.9"})
    result = verify(tampered)
    assert not result.valid and result.broken_at == 5 and result.events_checked == 4
    assert "content" in result.reason
    relinked = list(events)
    relinked[6] = replace(events[6], actor="mallory")
    assert verify(relinked).broken_at == 7


def test_a_removed_event_is_found() -> None:
    events = history()
    result = verify(events[:3] + events[4:])
    assert not result.valid and result.broken_at == 5 and "missing" in result.reason


def test_payloads_are_normalised_to_what_is_stored() -> None:
    event = next_event(None, "m", T0, "a", EventType.POLICY_CHANGED, None, {"t": (1, 2)})
    assert event.payload == {"t": [1, 2]}
    assert verify([event]).valid


def test_stages_as_of() -> None:
    events = history()
    assert stages_as_of(events, T0 - timedelta(minutes=1))[ModelStage.PRODUCTION] == []
    at_3h = stages_as_of(events, T0 + timedelta(hours=3, minutes=30))
    assert at_3h[ModelStage.PRODUCTION] == [1]
    at_7h = stages_as_of(events, T0 + timedelta(hours=7, minutes=30))
    assert at_7h[ModelStage.PRODUCTION] == [1, 2]  # v1 not yet archived
    final = stages_as_of(events, T0 + timedelta(days=1))
    assert final[ModelStage.PRODUCTION] == [2] and final[ModelStage.ARCHIVED] == [1]
