"""End-to-end tests: the service started by `scripts/serve` (and clusters by `scripts/cluster`),
driven over HTTP only."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent
# pyproject's 600 s per test is a guard against hangs; an end-to-end test on a slow
# 2-core machine (a cluster brought up, a training job on it) can honestly take longer.
E2E_TIMEOUT_S = 1800


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT_S))
