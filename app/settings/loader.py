"""The service's settings: pydantic-settings over layered YAML files and the environment.

Precedence, highest first: explicit overrides > environment (`ML_` prefix, `__` for
nesting, e.g. `ML_MLFLOW__TRACKING_URI`; any of them as `<NAME>_FILE`, naming a file
that holds the value: see `app.settings.environment`) > `configs/<env>.yaml` >
`configs/base.yaml` > field defaults. Settings are built once, in the application
builder, by `load_settings`; nothing here runs at import time. A bad value fails the
build with the file (or environment variable) it came from in the message. The secrets
of the settings it loads are made known to `redact` (see `app.settings.secrets`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from app.settings.environment import FILE_SUFFIX, EnvironmentWithFiles
from app.settings.lifecycle import DiagnosticsSettings, MonitoringSettings, RegistrySettings
from app.settings.platform import (
    ApiSettings,
    AuthSettings,
    FeatureSettings,
    MlflowSettings,
    PlacementSettings,
    StateSettings,
    StorageSettings,
    TrainingSettings,
)
from app.settings.secrets import (
    redact,
    remember_environment,
    remember_settings,
    with_password,
)
from app.settings.section import SettingsError
from app.settings.serving import ServingSettings

ENV_PREFIX = "ML_"
ENV_NESTING = "__"


class Settings(BaseSettings):
    """Every setting of the service, in sections."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTING,
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    env: str = Field(default="dev", description="Name of the configuration layer in use.")
    data_dir: Path = Field(
        default=Path("data"),
        description="The directory holding every embedded store; relative: to the cwd.",
    )
    log_level: str = Field(
        default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$", description="Service log level."
    )
    api: ApiSettings = Field(default_factory=ApiSettings, description="HTTP API behaviour.")
    auth: AuthSettings = Field(default_factory=AuthSettings, description="Tokens and roles.")
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings, description="MLflow stores.")
    state: StateSettings = Field(default_factory=StateSettings, description="Service state store.")
    storage: StorageSettings = Field(
        default_factory=StorageSettings,
        description="Files: datasets, checkpoints, batch outputs, the prediction log, model "
        "repositories.",
    )
    registry: RegistrySettings = Field(
        default_factory=RegistrySettings, description="Model registry and promotion policies."
    )
    serving: ServingSettings = Field(
        default_factory=ServingSettings, description="Deployments, routing and prediction."
    )
    training: TrainingSettings = Field(
        default_factory=TrainingSettings, description="Training and batch jobs."
    )
    placement: PlacementSettings = Field(
        default_factory=PlacementSettings,
        description="Ray resources that pin the service's work to node groups.",
    )
    features: FeatureSettings = Field(
        default_factory=FeatureSettings, description="The Feast feature store."
    )
    monitoring: MonitoringSettings = Field(
        default_factory=MonitoringSettings, description="Prediction log, drift and alerts."
    )
    diagnostics: DiagnosticsSettings = Field(
        default_factory=DiagnosticsSettings, description="Model diagnostics and its assistant."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # not used: YAML files are the file layer, `*_FILE` variables the secret files
        del env_settings, dotenv_settings, file_secret_settings
        return init_settings, EnvironmentWithFiles(settings_cls), _YamlLayers(settings_cls)

    def resolved(self) -> Settings:
        """Fill the values that derive from `data_dir` (empty URIs, relative paths), with
        absolute paths, and fold separately given passwords into their URLs: after this
        every section is complete as typed."""
        data_dir = self.data_dir.expanduser().resolve()
        mlflow_dir = data_dir / "mlflow"
        tracking_uri = self.mlflow.tracking_uri or f"sqlite:///{mlflow_dir / 'mlflow.db'}"
        mlflow = self.mlflow.model_copy(
            update={
                "tracking_uri": _with(self.mlflow.tracking_password, tracking_uri),
                "tracking_password": None,
                "artifact_root": self.mlflow.artifact_root or str(mlflow_dir / "artifacts"),
            }
        )
        database_url = self.state.database_url or f"sqlite:///{data_dir / 'state' / 'service.db'}"
        state = self.state.model_copy(
            update={
                "database_url": _with(self.state.database_password, database_url),
                "database_password": None,
            }
        )
        storage = self.storage.model_copy(
            update={
                "uri": self.storage.uri or str(data_dir),
                "cache_dir": _under(data_dir, self.storage.cache_dir),
            }
        )
        auth = self.auth.model_copy(
            update={"admin_token_file": _under(data_dir, self.auth.admin_token_file)}
        )
        training = self.training.model_copy(
            update={"workdir": _under(Path.cwd(), self.training.workdir)}
        )
        features = self.features.model_copy(
            update={
                "repo_dir": _under(Path.cwd(), self.features.repo_dir),
                "data_dir": _under(data_dir, self.features.data_dir),
            }
        )
        triton, llm = self.serving.triton, self.serving.llm
        serving = self.serving.model_copy(
            update={
                "triton": triton.model_copy(
                    update={"environment": _under(Path.cwd(), triton.environment)}
                ),
                "llm": llm.model_copy(update={"environment": _under(Path.cwd(), llm.environment)}),
            }
        )
        return self.model_copy(
            update={
                "data_dir": data_dir,
                "serving": serving,
                "mlflow": mlflow,
                "state": state,
                "storage": storage,
                "auth": auth,
                "training": training,
                "features": features,
            }
        )


def _with(password: SecretStr | None, url: str) -> str:
    """`url` with the password given apart from it (checked when the section was built)."""
    return with_password(url, password.get_secret_value()) if password else url


def _under(base: Path, path: Path) -> Path:
    """`path` made absolute: relative paths are taken from `base`."""
    return (base / path.expanduser()).resolve()


_LAYERS: ContextVar[tuple[tuple[Path, dict[str, Any]], ...]] = ContextVar("_LAYERS", default=())


class _YamlLayers(PydanticBaseSettingsSource):
    """The YAML files of the current `load_settings` call, later files overriding earlier."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        del field
        return self().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for _, data in _LAYERS.get():
            merged = _deep_merge(merged, data)
        return merged


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        # the message quotes the offending line, which may hold a URL with its password
        raise SettingsError(f"{path}: not valid YAML: {redact(str(exc))}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: must be a mapping of settings, got {type(data).__name__}")
    return data


@contextmanager
def _layers(layers: tuple[tuple[Path, dict[str, Any]], ...]) -> Iterator[None]:
    token = _LAYERS.set(layers)
    try:
        yield
    finally:
        _LAYERS.reset(token)


def load_settings(
    config_dir: Path | str = "configs",
    env: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build and validate the settings, with data-dir defaults resolved to absolute paths.

    Args:
        config_dir: directory holding `base.yaml` and `<env>.yaml`.
        env: configuration layer; default the `ML_ENV` variable, else `dev`.
        overrides: explicit values, highest precedence (nested mappings allowed).

    Raises:
        SettingsError: a file is missing or malformed, or a value is invalid; the message
            names the file or environment variable the bad value came from.
    """
    config_dir = Path(config_dir).expanduser().resolve()
    env = env or os.environ.get(f"{ENV_PREFIX}ENV") or "dev"
    if not config_dir.is_dir():
        raise SettingsError(f"{config_dir}: configuration directory does not exist")
    base, layer = config_dir / "base.yaml", config_dir / f"{env}.yaml"
    if not layer.is_file():
        known = sorted(p.stem for p in config_dir.glob("*.yaml") if p.stem != "base")
        raise SettingsError(f"{layer}: no such configuration layer (known: {', '.join(known)})")
    layers = ((base, _read_yaml(base)), (layer, _read_yaml(layer)))
    init = {"env": env, **(overrides or {})}
    remember_environment()
    with _layers(layers):
        try:
            settings = Settings(**init).resolved()
        except ValidationError as exc:
            raise SettingsError(_describe(exc, layers, init)) from None
    remember_settings(settings)
    return settings


def settings_fingerprint(*parts: BaseModel | str) -> str:
    """A short digest of settings (sections, or anything else given as text): long-lived
    actors built with other settings are replaced by the application builder."""
    text = "\n".join(p if isinstance(p, str) else p.model_dump_json() for p in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _describe(
    exc: ValidationError,
    layers: tuple[tuple[Path, dict[str, Any]], ...],
    init: Mapping[str, Any],
) -> str:
    lines = [f"invalid settings ({exc.error_count()} error(s)):"]
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        lines.append(f"  {_origin(loc, layers, init)}: {'.'.join(loc)}: {error['msg']}")
    return "\n".join(lines)


def _origin(
    loc: tuple[str, ...], layers: tuple[tuple[Path, dict[str, Any]], ...], init: Mapping[str, Any]
) -> str:
    """Name the source that supplied the value at `loc`: the highest-precedence one wins."""
    if _contains(init, loc):
        return "explicit override"
    for depth in range(len(loc), 0, -1):
        name = ENV_PREFIX + ENV_NESTING.join(loc[:depth]).upper()
        for key, value in os.environ.items():
            if key.upper() == name:
                return f"environment variable {name}"
            if key.upper() == name + FILE_SUFFIX:
                return f"file {value} (environment variable {key.upper()})"
    for path, data in reversed(layers):
        if _contains(data, loc):
            return str(path)
    return "default value"


def _contains(data: Mapping[str, Any], loc: tuple[str, ...]) -> bool:
    node: Any = data
    for part in loc:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list | tuple) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True
