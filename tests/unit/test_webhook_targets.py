"""Webhook targets: link-local and metadata addresses refused unless allowed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.adapters.webhooks import WebhookDelivery
from app.core.monitoring import Alert, AlertState, Delivery, MonitoringPolicy, Window
from app.core.webhook_targets import networks, refusal
from app.errors import InvalidInput
from app.services.monitoring import Monitoring
from app.settings import SettingsError
from testkit.auth import Tokens
from testkit.settings import settings_for


@pytest.mark.parametrize(
    ("host", "addresses", "why"),
    [
        ("169.254.169.254", [], "link-local"),
        ("[fe80::1]", [], "link-local"),
        ("metadata.google.internal", ["169.254.169.254"], "metadata"),
        ("METADATA.GOOGLE.INTERNAL.", [], "metadata"),
        ("100.100.100.200", [], "metadata"),
        ("[fd00:ec2::254]", [], "metadata"),
        ("hooks.example.com", ["93.184.216.34", "169.254.169.254"], "link-local"),
        ("0.0.0.0", [], "routable"),
        ("224.0.0.1", [], "routable"),
    ],
)
def test_forbidden_targets_are_refused_with_a_reason(
    host: str, addresses: list[str], why: str
) -> None:
    reason = refusal(host, addresses)
    assert reason is not None and why in reason, reason


@pytest.mark.parametrize(
    ("host", "addresses"),
    [
        ("hooks.example.com", ["93.184.216.34"]),
        ("127.0.0.1", []),  # a collector beside the service
        ("10.1.2.3", []),  # a company network
        ("alerts.internal", ["10.0.0.7", "fd12::7"]),
    ],
)
def test_ordinary_targets_may_go(host: str, addresses: list[str]) -> None:
    assert refusal(host, addresses) is None


def test_configuration_can_allow_a_network() -> None:
    allowed = networks(["169.254.10.0/24"])
    assert refusal("169.254.10.5", [], allowed) is None
    assert refusal("169.254.169.254", [], allowed) is not None
    with pytest.raises(ValueError):
        networks(["not-a-network"])


class NoMonitor:
    """Our `MonitorControl` port: records the policies it is given (nothing else is used)."""

    def __init__(self) -> None:
        self.policies: list[object] = []

    async def set_policy(self, model: str, policy: object) -> object:
        self.policies.append(policy)
        return policy


def alert() -> Alert:
    return Alert(
        id="a1",
        model="churn",
        version=1,
        state=AlertState.OPEN,
        features=("tenure",),
        scores={},
        window=Window(0, 1, 10),
        opened_at=0,
        last_seen_at=0,
    )


def test_a_policy_with_a_metadata_webhook_is_refused_naming_the_field() -> None:
    monitor = NoMonitor()
    monitoring = Monitoring(monitor, None, None, None, None)  # type: ignore[arg-type]
    bad = MonitoringPolicy(webhook_url="http://169.254.169.254/latest/meta-data/")
    with pytest.raises(InvalidInput) as refused:
        asyncio.run(monitoring.set_policy("churn", bad))
    assert refused.value.field_errors[0].field == "webhook_url"
    assert "link-local" in refused.value.message
    assert monitor.policies == []  # nothing stored
    fine = MonitoringPolicy(webhook_url="http://127.0.0.1:9/hook")
    asyncio.run(monitoring.set_policy("churn", fine))
    assert monitor.policies == [fine]
    allowed = Monitoring(monitor, None, None, None, None, networks(["169.254.0.0/16"]))  # type: ignore[arg-type]
    asyncio.run(allowed.set_policy("churn", bad))


def test_a_delivery_to_a_name_resolving_to_metadata_is_refused_before_any_request() -> None:
    delivery = WebhookDelivery(None, timeout_s=1, attempts=3)
    for url in ("http://169.254.169.254/hook", "http://metadata.google.internal/computeMetadata"):
        sent = asyncio.run(delivery.deliver(alert(), url))
        assert sent.delivery == Delivery.FAILED
        assert sent.delivery_detail.startswith("refused: "), sent.delivery_detail


def test_the_default_webhook_of_the_settings_is_checked_too(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="link-local"):
        settings_for(tmp_path, Tokens(), monitoring={"webhook_url": "http://169.254.169.254/"})
    allowed = {
        "webhook_url": "http://169.254.10.1/",
        "webhook_allowed_networks": ["169.254.10.0/24"],
    }
    assert settings_for(tmp_path, Tokens(), monitoring=allowed).monitoring.webhook_url
