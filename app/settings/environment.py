"""The environment layer of the settings, where any setting may come from a file.

`ML_STATE__DATABASE_URL_FILE=/run/secrets/db-url` stands for `ML_STATE__DATABASE_URL`
set to that file's content (trailing newlines stripped): the convention of Docker
secrets and of Kubernetes Secrets mounted as files, so that a secret never has to sit in
the process's environment, where `ps e`, `/proc/<pid>/environ` and crash reports show it.
A `*_FILE` variable is read this way only when it names a setting and is not itself a
setting's variable (`ML_AUTH__ADMIN_TOKEN_FILE` is the setting `auth.admin_token_file`).
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_settings import EnvSettingsSource

from app.settings.section import SettingsError

FILE_SUFFIX = "_FILE"


class EnvironmentWithFiles(EnvSettingsSource):
    """pydantic-settings' environment source, `*_FILE` variables replaced by the variable
    they stand for with the file's content: same precedence as the environment."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = dict(super()._load_env_vars())
        for key in [k for k in env if self._stands_for_a_setting(k)]:
            path, target = env.pop(key), key.removesuffix(FILE_SUFFIX.lower())
            name = target.upper()
            if target in env:
                raise SettingsError(
                    f"{name} and {name}{FILE_SUFFIX} are both set: give the value in one place"
                )
            env[target] = read_secret_file(f"{name}{FILE_SUFFIX}", path or "")
        return env

    def _stands_for_a_setting(self, key: str) -> bool:
        prefix, suffix = self.env_prefix.lower(), FILE_SUFFIX.lower()
        if not key.startswith(prefix) or not key.endswith(suffix):
            return False
        parts = key.removeprefix(prefix).split(self.env_nested_delimiter or "\0")
        stripped = [*parts[:-1], parts[-1].removesuffix(suffix)]
        return not _is_setting(self.settings_cls, parts) and _is_setting(
            self.settings_cls, stripped
        )


def read_secret_file(variable: str, path: str) -> str:
    """The content of the file a `*_FILE` variable names, trailing newlines stripped.

    Raises:
        SettingsError: the file cannot be read; the message names the variable and the
            path, never the content.
    """
    if not path:
        raise SettingsError(f"{variable} is set but empty: it must name a file")
    try:
        return Path(path).expanduser().read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise SettingsError(f"{variable}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{variable}: {path} is not UTF-8 text") from None


def _is_setting(model: type[BaseModel], parts: list[str]) -> bool:
    """Whether the lower-cased path `parts` names a setting (or a key of a mapping setting)."""
    annotation: Any = model
    for part in parts:
        annotation = _child(annotation, part)
        if annotation is _MISSING:
            return False
    return True


_MISSING = object()


def _child(annotation: Any, part: str) -> Any:
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            field = member.model_fields.get(part)
            if field is not None:
                return field.annotation
        elif get_origin(member) in (dict, Mapping) and part:
            return get_args(member)[1] if get_args(member) else Any
    return _MISSING


def _members(annotation: Any) -> tuple[Any, ...]:
    """The types a union stands for (`X | None`, `Optional[X]`), or the annotation."""
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)
