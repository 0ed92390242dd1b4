"""Unit tests: no Ray, no network, no MLflow store. Milliseconds each."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_ray_in_unit_tests() -> Iterator[None]:
    """Starting Ray in a unit test is a bug (as in Ray's own serve/tests/unit): a test that
    did fails here, and belongs in tests/integration, which runs the real cluster."""
    yield
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
        pytest.fail("this unit test started Ray; move it to tests/integration")
