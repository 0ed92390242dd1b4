"""Alert decisions: open once, update while drift holds, resolve, cooldown, debounced
retraining, signatures, stored forms."""

from __future__ import annotations

import json

from app.core.drift import FeatureDrift, FeatureKind, Thresholds
from app.core.monitoring import (
    Alert,
    AlertState,
    Delivery,
    MonitoringPolicy,
    RetrainPolicy,
    Window,
    assess,
    policy_as_dict,
    policy_from_dict,
    sign,
    verify,
)

POLICY = MonitoringPolicy(
    window_s=60,
    cooldown_s=600,
    webhook_url="http://hooks.local/alerts",
    retrain=RetrainPolicy(spec={"experiment": "x"}, max_jobs=1, period_s=3600),
)
WINDOW = Window(0, 60, 1000)


def result(feature: str, drifted: bool, samples: int = 1000) -> FeatureDrift:
    return FeatureDrift(
        feature,
        FeatureKind.NUMERIC,
        samples,
        0.0,
        0.5 if drifted else 0.01,
        0.2,
        0.3,
        0.4,
        1e-9,
        drifted=drifted,
        reason="PSI" if drifted else "",
    )


def step(
    latest: Alert | None, results: list[FeatureDrift], now: float, retrains: tuple[float, ...] = ()
):
    return assess("churn", 3, latest, results, WINDOW, POLICY, now, f"a{int(now)}", retrains)


def test_drift_opens_one_alert_sent_once_while_it_holds() -> None:
    first = step(None, [result("age", True), result("tenure", False)], 100)
    assert first.alert is not None and first.deliver and first.retrain
    assert first.alert.features == ("age",) and first.alert.delivery is Delivery.PENDING
    assert (first.alert.model, first.alert.version) == ("churn", 3)
    second = step(first.alert, [result("age", True), result("calls", True)], 160)
    assert second.alert is not None and not second.deliver and not second.retrain
    assert second.alert.id == first.alert.id and second.alert.occurrences == 2
    assert second.alert.features == ("age", "calls")


def test_a_clean_window_resolves_and_a_return_within_the_cooldown_reopens_silently() -> None:
    opened = step(None, [result("age", True)], 100).alert
    resolved = step(opened, [result("age", False)], 200).alert
    assert resolved is not None and resolved.state is AlertState.RESOLVED
    back = step(resolved, [result("age", True)], 500)
    assert back.alert is not None and back.alert.id == opened.id  # type: ignore[union-attr]
    assert back.alert.state is AlertState.OPEN and not back.deliver
    later = step(resolved, [result("age", True)], 200 + 601)
    assert later.alert is not None and later.alert.id != opened.id and later.deliver  # type: ignore[union-attr]


def test_too_few_samples_neither_opens_nor_resolves() -> None:
    opened = step(None, [result("age", True)], 100).alert
    assert step(opened, [result("age", False, samples=10)], 160).alert is None


def test_retraining_is_debounced() -> None:
    assert not step(None, [result("age", True)], 5000, retrains=(4000,)).retrain
    assert step(None, [result("age", True)], 9000, retrains=(4000,)).retrain
    quiet = assess("m", 1, None, [result("age", True)], WINDOW, MonitoringPolicy(), 1, "a")
    assert not quiet.retrain and not quiet.deliver and quiet.alert is not None
    assert quiet.alert.delivery is Delivery.NONE


def test_signatures() -> None:
    body = b'{"alert": 1}'
    signature = sign("s3cret", "1700000000", body)
    now = 1_700_000_100.0
    assert signature.startswith("sha256=")
    assert verify("s3cret", "1700000000", body, signature, now=now)
    assert not verify("s3cret", "1700000001", body, signature, now=now)
    assert not verify("other", "1700000000", body, signature, now=now)
    assert not verify("s3cret", "1700000000", body, signature, now=now + 3600)  # replayed
    assert not verify("s3cret", "yesterday", body, signature, now=now)


def test_stored_forms_round_trip() -> None:
    policy = MonitoringPolicy(thresholds=Thresholds(psi=0.3), retrain=POLICY.retrain)
    assert policy_from_dict(json.loads(json.dumps(policy_as_dict(policy)))) == policy
    alert = step(None, [result("age", True)], 100).alert
    assert alert is not None
    assert Alert.from_dict(json.loads(json.dumps(alert.to_dict()))) == alert
