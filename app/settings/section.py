"""The base of every settings section, and the error a bad setting raises."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SettingsError(Exception):
    """Settings could not be loaded; the message names the file or variable at fault."""


class Section(BaseModel):
    """A settings section: unknown keys are refused, values never change after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True)
