"""The base of every settings section, and the error a bad setting raises."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import AnyUrl, BaseModel, ConfigDict

from app.settings.secrets import redact, remember_settings


class SettingsError(Exception):
    """Settings could not be loaded; the message names the file or variable at fault."""


class Section(BaseModel):
    """A settings section: unknown keys are refused, values never change after loading.

    Its repr (and str) shows URLs without their passwords; the values themselves stay
    plain strings, as the adapters take them. A section unpickled in another process
    (an actor's or replica's constructor arguments) makes its secrets known to that
    process's `redact`, as `load_settings` does in the process that loaded them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if isinstance(value, str | AnyUrl):
                shown = redact(str(value))
                yield name, value if shown == str(value) else shown
            else:
                yield name, value

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        remember_settings(self)
