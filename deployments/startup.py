"""Start-up preparation, run by the application builder before any replica starts.

Creates the data directory, migrates the MLflow database once, applies the Feast feature
repository (writing the demo data on a first development start), and, on a development
start with no token configured, generates an admin token into the data directory (an
owner-only file, as Jupyter does), stores its hash with the tokens made through the API
and says where it is. The token itself is never logged.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from app.adapters.local_files import exclusive
from app.adapters.mlflow_store import prepare_mlflow_store
from app.adapters.token_store import SqlTokenStore
from app.core.access import mint_token, token_digest
from app.core.api_tokens import ApiToken, TokenSource
from app.services.tokens import bootstrap_token
from app.settings import Settings, SettingsError
from deployments.composition import feature_store

log = logging.getLogger(__name__)


def prepare(settings: Settings, *, announce: bool = False, features: bool = True) -> Settings:
    """Prepare the stores and credentials.

    The bootstrap admin token's fate: it exists while the service has no other callers
    configured (no `auth.tokens`, no `auth.oidc`). It is stored like a token made through
    the API, so it is listed and revocable (`DELETE /auth/tokens/{id}`; delete the file to
    get a new one). Once tokens or an issuer are configured, start-up revokes it and says so.

    Args:
        settings: resolved settings.
        announce: print where the bootstrap admin token is (once per start).
        features: apply the Feast feature repository (the `ml` application's builder
            does; MLflow's does not need it, and importing Feast takes seconds).

    Raises:
        SettingsError: no token is configured and bootstrapping one is disabled.
    """
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with exclusive(data_dir / ".prepare.lock"):
        prepare_mlflow_store(settings.mlflow.tracking_uri, settings.mlflow.artifact_root)
        if features and settings.features.enabled:
            feature_store(settings).start(demo_data=settings.features.demo_data)
        store = SqlTokenStore(settings.state.database_url)
        if settings.auth.tokens or settings.auth.oidc is not None:
            _retire_bootstrap_tokens(store, settings.auth.admin_token_file)
            return settings  # callers are known: no token is generated
        if not settings.auth.bootstrap_admin_token:
            raise SettingsError(
                "auth.tokens is empty, auth.oidc is not set and auth.bootstrap_admin_token is "
                "off: configure at least one token (mint one with `python -m app.tokens "
                "--role admin`) or an OIDC issuer"
            )
        token_file = settings.auth.admin_token_file
        digest = _ensure_token_file(token_file)
        stored = store.find(digest)
        if stored is None:
            stored = bootstrap_token(digest, time.time())
            store.add(stored)
    if announce:
        _announce(token_file, stored)
    return settings


def _retire_bootstrap_tokens(store: SqlTokenStore, token_file: Path) -> None:
    """Revoke the bootstrap admin token (configured callers replace it), saying so."""
    for token in store.page(0, 1000, include_revoked=False):
        if token.source is TokenSource.BOOTSTRAP:
            store.revoke(token.id, time.time(), "start-up")
            log.warning(
                "auth.tokens or auth.oidc is configured: the bootstrap admin token %s "
                "(%s) is revoked and no new one is generated",
                token.id,
                token_file,
            )


def _ensure_token_file(path: Path) -> str:
    """The digest of the token in `path`, creating the file (mode 0600) if it is missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(mint_token() + "\n")
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    token = path.read_text().strip()
    if not token:
        raise SettingsError(f"{path}: the admin token file is empty; delete it to regenerate")
    return token_digest(token)


def _announce(token_file: Path, token: ApiToken) -> None:
    if token.revoked_at is not None:
        sys.stderr.write(
            f"\n    The admin token in {token_file} ({token.id}) was revoked by "
            f"{token.revoked_by}.\n    Delete the file and restart for a new one, or use a "
            "token an admin created.\n\n"
        )
        sys.stderr.flush()
        return
    sys.stderr.write(
        "\n"
        "    ML Service admin token (role: admin) is in an owner-only file:\n"
        f"        {token_file}\n"
        "    Use it with:\n"
        f"        export ML_TOKEN=$(cat {token_file})\n"
        '        curl -H "Authorization: Bearer $ML_TOKEN" '
        "http://127.0.0.1:8000/api/v1/ml/experiments\n"
        "        export MLFLOW_TRACKING_TOKEN=$ML_TOKEN   # for the MLflow client at /mlflow\n"
        f"    It is token {token.id}: list tokens, create others and revoke this one with\n"
        "        .venv/bin/python -m app.tokens --help\n\n"
    )
    sys.stderr.flush()
