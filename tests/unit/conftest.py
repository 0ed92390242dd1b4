"""Unit tests: no Ray, no network, no MLflow store. Milliseconds each."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def _no_ray_in_unit_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting Ray in a unit test is a bug (as in Ray's own serve/tests/unit)."""
    if "ray" in sys.modules:

        def refuse(*args: object, **kwargs: object) -> None:
            raise RuntimeError("unit tests must not start Ray; move the test to integration")

        monkeypatch.setattr(sys.modules["ray"], "init", refuse)
