"""The model server's loads: one per version at a time, bounded by its deadline.

`_load_pyfunc` (our own function around MLflow) is replaced by one that blocks, to stand
for a model whose loading never returns; the real load, through MLflow and Serve, is
tested in tests/integration/test_serving.py and test_registry.py (hanging model).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from app.errors import Unavailable
from deployments import model_server
from deployments.model_server import ModelServer


class _Pyfunc:
    metadata = None


def test_a_load_that_never_returns_holds_one_thread_and_then_fails_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    calls: list[str] = []

    def hanging(uri: str) -> Any:
        calls.append(uri)
        release.wait(30)
        return _Pyfunc()

    monkeypatch.setattr(model_server, "_load_pyfunc", hanging)
    server = ModelServer(f"file://{tmp_path}", load_timeout_s=0.5)

    async def scenario() -> None:
        first = await asyncio.gather(
            *(server.load("churn/3") for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(e, Unavailable) for e in first), first
        assert "did not load in 0.5 s" in str(first[0])
        with pytest.raises(Unavailable, match="did not load"):
            await server.load("churn/3")  # past the deadline: fails, no new thread
        assert calls == ["models:/churn/3"]
        release.set()
        deadline = asyncio.get_running_loop().time() + 30
        while "churn/3" in server._loading:  # the stuck load ends, and is forgotten
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        loaded = await server.load("churn/3")  # a new load
        assert loaded.model_id == "churn/3" and loaded.columns is None
        assert calls == ["models:/churn/3", "models:/churn/3"]

    asyncio.run(scenario())
