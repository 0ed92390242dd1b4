"""The project's own configuration layers, with a data directory and tokens of a test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.settings import Settings, load_settings
from testkit.auth import Tokens

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def settings_for(data_dir: Path, tokens: Tokens, **overrides: Any) -> Settings:
    return load_settings(
        CONFIGS,
        "dev",
        {"data_dir": str(data_dir), "auth": {"tokens": tokens.entries()}, **overrides},
    )
