"""`AlertDelivery` over HTTP webhooks: each opened alert is POSTed as JSON, signed with
HMAC-SHA256 (`X-MLService-Signature: sha256=HMAC(secret, "<timestamp>.<body>")`, the
timestamp in `X-MLService-Timestamp`), with a few attempts and a growing pause."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from urllib.parse import urlsplit

import httpx

from app.core.monitoring import SIGNATURE_HEADER, TIMESTAMP_HEADER, Alert, Delivery, sign
from app.core.webhook_targets import IpNetwork, refusal
from app.settings import redact

log = logging.getLogger(__name__)


class WebhookDelivery:
    """Sends alerts to webhooks.

    Args:
        secret: the HMAC key (None: deliveries are unsigned).
        timeout_s: one attempt's limit.
        attempts: attempts per delivery.
        clock: epoch seconds (the signed timestamp).
        allowed: networks webhooks may reach although link-local (the guard of
            `app.core.webhook_targets` runs on every address the host resolves to).
    """

    def __init__(
        self,
        secret: str | None,
        timeout_s: float,
        attempts: int,
        clock: Callable[[], float] = time.time,
        allowed: Sequence[IpNetwork] = (),
    ) -> None:
        self._secret = secret
        self._allowed = tuple(allowed)
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._clock = clock

    async def deliver(self, alert: Alert, url: str) -> Alert:
        """See `AlertDelivery.deliver`."""
        body = json.dumps({"event": "alert.opened", "alert": alert.to_dict()}).encode()
        timestamp = str(int(self._clock()))
        headers = {"content-type": "application/json", TIMESTAMP_HEADER: timestamp}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        why = await self._refusal(url)
        if why:
            log.warning("webhook for alert %s refused: %s", alert.id, why)
            return replace(alert, delivery=Delivery.FAILED, delivery_detail=f"refused: {why}")
        detail = ""
        async with httpx.AsyncClient(timeout=self._timeout_s) as http:
            for attempt in range(1, self._attempts + 1):
                try:
                    response = await http.post(url, content=body, headers=headers)
                    if response.status_code < 300:
                        return replace(
                            alert,
                            delivery=Delivery.DELIVERED,
                            delivery_detail=f"HTTP {response.status_code}",
                        )
                    detail = f"HTTP {response.status_code}"
                except (httpx.HTTPError, httpx.InvalidURL) as exc:
                    detail = redact(f"{type(exc).__name__}: {exc}")
                log.warning(
                    "webhook for alert %s: attempt %d failed (%s)", alert.id, attempt, detail
                )
                if attempt < self._attempts:
                    await asyncio.sleep(min(2.0**attempt * 0.25, 5.0))
        return replace(alert, delivery=Delivery.FAILED, delivery_detail=detail[:500])

    async def _refusal(self, url: str) -> str | None:
        """Why `url` may not be called (its host and every address it resolves to)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            found = await asyncio.get_running_loop().getaddrinfo(
                host, parts.port or (443 if parts.scheme == "https" else 80)
            )
        except OSError:
            found = []  # unresolvable: the attempt fails and says so
        return refusal(host, [str(info[4][0]) for info in found], self._allowed)
