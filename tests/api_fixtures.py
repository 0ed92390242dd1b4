"""Tokens, settings and in-process apps shared by the test layers and the benchmarks.

`StubTracker` stands in for our `ExperimentTracker` port only, never for MLflow: the
same routes run against the real MLflow adapter in tests/integration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from app.api.factory import create_api
from app.core.access import Role, mint_token, token_digest
from app.ports import HealthProbe
from app.settings import Settings, load_settings

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class Tokens:
    """One token per role."""

    def __init__(self) -> None:
        self.by_role = {role: mint_token() for role in Role}

    def header(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.by_role[role]}"}

    def entries(self) -> list[dict[str, Any]]:
        return [
            {"name": f"{role}-user", "roles": [role.value], "sha256": token_digest(token)}
            for role, token in self.by_role.items()
        ]


def settings_for(data_dir: Path, tokens: Tokens, **overrides: Any) -> Settings:
    return load_settings(
        CONFIGS,
        "dev",
        {"data_dir": str(data_dir), "auth": {"tokens": tokens.entries()}, **overrides},
    )


class StubTracker:
    """Our port, answering every call with `behaviour` (by default: must not be called)."""

    def __init__(self, behaviour: Callable[[str], Any] | None = None) -> None:
        self.calls: list[str] = []
        self._behaviour = behaviour

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if self._behaviour is None:
                raise AssertionError(f"the tracker must not be called ({name})")
            return self._behaviour(name)

        return call


def build_app(settings: Settings, tracker: Any, probes: Sequence[HealthProbe] = ()) -> FastAPI:
    return create_api(settings, tracker, probes)
