"""Settings of what the service stands on: tokens, the HTTP API, MLflow, the state
database, the file storage, the feature store and the cluster's jobs.

Fields that depend on `data_dir` are filled by `Settings.resolved` (relative paths are
taken from `data_dir`, empty URIs get the embedded defaults), so consumers read them as
given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from app.core.access import Role
from app.settings.secrets import with_password
from app.settings.section import Section


class TokenEntry(Section):
    """A bearer token known to the service, stored as the SHA-256 of the token."""

    name: str = Field(description="Who holds the token; recorded as the actor in audit events.")
    roles: tuple[Role, ...] = Field(min_length=1, description="Roles granted to the holder.")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="Hex SHA-256 of the token; mint one with `python -m app.tokens`.",
    )


class OidcSettings(Section):
    """JWT bearer tokens from an OpenID Connect issuer (Keycloak, Okta, Entra ID, Dex...):
    signed with a key of the issuer's JWKS, for this audience, roles from a claim."""

    issuer: str = Field(
        min_length=1, description="The `iss` every token must carry, e.g. https://idp/realms/ml."
    )
    jwks_url: str = Field(
        pattern=r"^https?://", description="The issuer's signing keys (JWKS document)."
    )
    audience: str = Field(min_length=1, description="The `aud` every token must name.")
    roles_claim: str = Field(
        default="roles",
        min_length=1,
        description="The claim holding the caller's roles (a list or a space-separated string; "
        "dots reach into objects, e.g. `realm_access.roles`).",
    )
    role_map: dict[str, Role] = Field(
        default_factory=dict,
        description="Claim value -> service role, e.g. {ml-engineers: engineer}; a value that is "
        "itself a role name counts as that role. Values mapped to nothing grant nothing.",
    )
    name_claim: str = Field(
        default="sub", min_length=1, description="The claim recorded as the actor in audit events."
    )
    algorithms: tuple[str, ...] = Field(
        default=("RS256", "ES256"), min_length=1, description="Signature algorithms accepted."
    )
    leeway_s: float = Field(default=30, ge=0, le=300, description="Clock skew allowed.")
    jwks_timeout_s: float = Field(
        default=5, gt=0, le=60, description="Fetching the JWKS gives up after this long."
    )
    jwks_cache_s: float = Field(
        default=300, ge=0, description="Keys are re-fetched this often (and for an unknown kid)."
    )


class AuthSettings(Section):
    """Who may call the API."""

    oidc: OidcSettings | None = Field(
        default=None,
        description="Also accept JWTs of an OpenID Connect issuer (besides the tokens below).",
    )

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
    admin_token_file: Path = Field(
        default=Path("admin.token"),
        description="Where the bootstrap admin token is kept; relative: to `data_dir`.",
    )


class ApiSettings(Section):
    """HTTP API behaviour."""

    base_path: str = Field(default="/api/v1/ml", description="Prefix of every API route.")
    default_page_size: int = Field(default=50, ge=1, le=1000, description="Page size by default.")
    max_page_size: int = Field(default=500, ge=1, le=10000, description="Largest page allowed.")
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 above)."
    )
    workbench_dir: str = Field(
        default="workbench/dist",
        description="The built ML Workbench, served at /workbench/ (relative: to the project's "
        "root; `scripts/setup` builds it); empty: not served.",
    )


class MlflowSettings(Section):
    """The MLflow tracking store and model registry."""

    tracking_uri: str = Field(
        default="",
        description="Backend store URI; empty: SQLite in `<data_dir>/mlflow/mlflow.db`.",
    )
    tracking_password: SecretStr | None = Field(
        default=None,
        description="The password of `tracking_uri`'s user, kept out of the URI (e.g. "
        "`ML_MLFLOW__TRACKING_PASSWORD_FILE=/run/secrets/mlflow-db`); folded into it on load.",
    )
    artifact_root: str = Field(
        default="",
        description="Artifact root (path or s3://...); empty: `<data_dir>/mlflow/artifacts`.",
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
    def _tracking_uri_has_scheme(cls, value: str) -> str:
        if value and "://" not in value:
            raise ValueError("must be a URI such as sqlite:///path or postgresql://host/db")
        return value

    @field_validator("tracking_password")
    @classmethod
    def _tracking_password_fits(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        return _fits(value, info.data.get("tracking_uri"), "tracking_uri")


class StateSettings(Section):
    """The service's own state store (stages, traffic, audit, alerts)."""

    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty: SQLite in `<data_dir>/state/service.db`.",
    )
    database_password: SecretStr | None = Field(
        default=None,
        description="The password of `database_url`'s user, kept out of the URL (e.g. "
        "`ML_STATE__DATABASE_PASSWORD_FILE=/run/secrets/state-db`); folded into it on load.",
    )

    @field_validator("database_password")
    @classmethod
    def _database_password_fits(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        return _fits(value, info.data.get("database_url"), "database_url")


def _fits(password: SecretStr | None, url: str | None, url_field: str) -> SecretStr | None:
    """A separate password needs a URL with a user name and no password of its own."""
    if password is None or url is None:  # url None: it failed validation itself
        return password
    if not url:
        raise ValueError(f"needs `{url_field}` set: the embedded SQLite store has no password")
    with_password(url, password.get_secret_value())
    return password


class StorageSettings(Section):
    """The file storage (datasets, checkpoints, batch outputs, the prediction log, Triton
    repositories, LLM model directories): a directory, or an S3-compatible bucket."""

    uri: str = Field(
        default="",
        description="Root: a directory (path or file://...) or s3://bucket/prefix (MinIO or "
        "S3); empty: `data_dir` itself.",
    )
    endpoint_url: str | None = Field(
        default=None,
        description="The S3-compatible server (e.g. http://minio:9000); default: AWS S3, or "
        "the AWS_ENDPOINT_URL variable.",
    )
    region: str | None = Field(default=None, description="S3 region; default: us-east-1.")
    access_key_id: SecretStr | None = Field(
        default=None, description="S3 key id; default: the AWS_ACCESS_KEY_ID variable."
    )
    secret_access_key: SecretStr | None = Field(
        default=None, description="S3 secret; default: the AWS_SECRET_ACCESS_KEY variable."
    )
    cache_dir: Path = Field(
        default=Path("cache"),
        description="Node-local copies of stored directories for servers that need local "
        "files (with an S3 root); relative: to `data_dir`.",
    )


class TrainingSettings(Section):
    """Jobs on the cluster: training, tuning, batch prediction."""

    dashboard_url: str | None = Field(
        default=None,
        description="Ray's job API (the dashboard); default: the cluster the service runs in.",
    )
    workdir: Path = Field(
        default=Path("."),
        description="Relative dataset paths of API submissions resolve against it; relative: "
        "to the directory the service started in.",
    )
    max_active_jobs: int = Field(
        default=8,
        ge=1,
        le=10000,
        description="Jobs pending or running at once; a submission beyond is refused with 429 "
        "`too_many_jobs` (retry when one ends, or cancel one).",
    )


Resources = dict[str, Annotated[float, Field(gt=0)]]


class PlacementSettings(Section):
    """Where the service's own Ray work runs on a multi-node cluster: extra Ray resources
    (custom resources of a node group) each kind of work asks for. Empty, the default:
    anywhere (one node). The cluster's values come from deploy/placement.yaml, given to
    every node as `ML_PLACEMENT__<KEY>` variables (JSON objects)."""

    state_actors: Resources = Field(
        default_factory=dict, description="The registry, traffic and monitor actors."
    )
    training_workers: Resources = Field(
        default_factory=dict, description="Ray Train and Tune workers of CPU jobs."
    )
    gpu_training_workers: Resources = Field(
        default_factory=dict,
        description="Ray Train workers of jobs with `use_gpu` (besides their GPUs).",
    )
    batch_workers: Resources = Field(
        default_factory=dict, description="Ray Data tasks and actors of batch prediction."
    )


class FeatureSettings(Section):
    """The Feast feature store."""

    enabled: bool = Field(default=True, description="Serve `/features` (applies the repo).")
    repo_dir: Path = Field(
        default=Path("configs/feature_repo"),
        description="The feature repository (feature_store.yaml, features.py); relative: to "
        "the cwd.",
    )
    data_dir: Path = Field(
        default=Path("feast"),
        description="The embedded registry and online SQLite (`${ML_FEAST_DIR}` in "
        "feature_store.yaml; unused by the production config); relative: to `data_dir`. "
        "The offline parquet lives in the storage's `feast/` (read through "
        "`<storage.cache_dir>/feast` when the storage is S3).",
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
    online_timeout_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="Connect and read timeout of a Redis online store, unless its connection "
        "string sets `socket_connect_timeout`/`socket_timeout`: a stopped Redis makes reads "
        "fail (503) and the health probe report down within it.",
    )
