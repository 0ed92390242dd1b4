"""Waiting for a condition with a deadline (never a fixed sleep): the tests' one helper."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


def wait_for(check: Callable[[], T], what: str, timeout_s: float = 120, poll_s: float = 0.2) -> T:
    """`check()`'s first truthy value, polled every `poll_s` until `timeout_s` has passed
    (then an AssertionError naming `what` and the last failure). A check that raises an
    AssertionError or an HTTP transport error counts as not yet."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        try:
            found = check()
        except (AssertionError, httpx.HTTPError) as exc:
            found, last = None, exc  # type: ignore[assignment]
        if found:
            return found
        assert time.monotonic() < deadline, f"{what} after {timeout_s}s: {last!r}"
        time.sleep(poll_s)
