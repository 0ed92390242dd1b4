"""Start-up preparation on a real data directory and MLflow store."""

from __future__ import annotations

import logging
import shutil
import stat
import time
from pathlib import Path

import pytest

from app.adapters.token_store import SqlTokenStore
from app.core.access import Principal, Role, TokenBook, token_digest
from app.core.api_tokens import TokenSource
from app.errors import Unauthenticated
from app.settings import Settings, SettingsError, load_settings
from deployments import composition
from deployments.startup import prepare
from testkit.auth import Tokens
from testkit.settings import CONFIGS

pytestmark = pytest.mark.integration


def fresh(tmp_path: Path, mlflow_template: Path, **overrides: object) -> Settings:
    data = tmp_path / "data"
    (data / "mlflow").mkdir(parents=True, exist_ok=True)
    shutil.copy(mlflow_template, data / "mlflow" / "mlflow.db")
    return load_settings(CONFIGS, "dev", {"data_dir": str(data), **overrides})


def bootstrap_book(settings: Settings) -> TokenBook:
    """The token book an ingress replica of these settings authenticates with."""
    return composition.token_book(settings.auth, settings.state.database_url)


def test_dev_start_generates_an_owner_only_admin_token_once(
    tmp_path: Path, mlflow_template: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = fresh(tmp_path, mlflow_template)
    prepared = prepare(settings, announce=True)
    token_file = settings.data_dir / "admin.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert prepared.auth.tokens == ()  # stored with the API's tokens, not configured
    store = SqlTokenStore(settings.state.database_url)
    (stored,) = store.page(0, 10, include_revoked=True)
    assert (stored.name, stored.roles, stored.sha256, stored.source) == (
        "bootstrap-admin",
        (Role.ADMIN,),
        token_digest(token),
        TokenSource.BOOTSTRAP,
    )
    printed = capsys.readouterr()
    assert str(token_file) in printed.err and stored.id in printed.err
    assert token not in printed.err + printed.out  # the path is printed, never the token

    token_file.chmod(0o644)
    prepare(settings)
    assert store.page(0, 10, include_revoked=True) == [stored]  # a restart keeps the token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    principal = bootstrap_book(settings).principal_for(token)
    assert principal == Principal("bootstrap-admin", frozenset({Role.ADMIN}))


def test_a_revoked_bootstrap_token_stays_revoked_until_its_file_is_deleted(
    tmp_path: Path, mlflow_template: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = fresh(tmp_path, mlflow_template)
    prepare(settings)
    token_file = settings.data_dir / "admin.token"
    old = token_file.read_text().strip()
    store = SqlTokenStore(settings.state.database_url)
    (stored,) = store.page(0, 10, include_revoked=False)
    store.revoke(stored.id, time.time(), "admin-user")
    prepare(settings, announce=True)
    assert "was revoked by admin-user" in capsys.readouterr().err
    with pytest.raises(Unauthenticated, match="revoked"):
        bootstrap_book(settings).principal_for(old)

    token_file.unlink()
    prepare(settings)
    new = token_file.read_text().strip()
    assert new != old
    assert bootstrap_book(settings).principal_for(new) is not None


def test_configured_tokens_mean_no_generated_token_and_revoke_the_bootstrap_one(
    tmp_path: Path, mlflow_template: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = fresh(tmp_path, mlflow_template)
    prepare(first)
    bootstrap = (first.data_dir / "admin.token").read_text().strip()
    tokens = Tokens()
    settings = fresh(tmp_path, mlflow_template, auth={"tokens": tokens.entries()})
    with caplog.at_level(logging.WARNING):
        assert prepare(settings).auth.tokens == settings.auth.tokens
    assert "bootstrap admin token" in caplog.text and "revoked" in caplog.text
    with pytest.raises(Unauthenticated, match="revoked"):
        bootstrap_book(settings).principal_for(bootstrap)
    assert bootstrap_book(settings).principal_for(tokens.by_role[Role.VIEWER]) is not None


def test_configured_tokens_on_a_fresh_directory_generate_nothing(
    tmp_path: Path, mlflow_template: Path
) -> None:
    tokens = Tokens()
    settings = fresh(tmp_path, mlflow_template, auth={"tokens": tokens.entries()})
    assert prepare(settings).auth.tokens == settings.auth.tokens
    assert not (settings.data_dir / "admin.token").exists()


def test_an_oidc_issuer_alone_is_enough_and_generates_no_token(
    tmp_path: Path, mlflow_template: Path
) -> None:
    oidc = {
        "issuer": "https://idp.example",
        "jwks_url": "https://idp.example/certs",
        "audience": "ml",
    }
    settings = fresh(tmp_path, mlflow_template, auth={"oidc": oidc})
    assert prepare(settings).auth.tokens == ()
    assert not (settings.data_dir / "admin.token").exists()


def test_no_tokens_and_no_bootstrap_is_refused(tmp_path: Path, mlflow_template: Path) -> None:
    settings = fresh(tmp_path, mlflow_template, auth={"bootstrap_admin_token": False})
    with pytest.raises(SettingsError) as refused:
        prepare(settings)
    assert "auth.tokens" in str(refused.value)


def test_fresh_data_dir_gets_every_store(tmp_path: Path) -> None:
    settings = load_settings(CONFIGS, "dev", {"data_dir": str(tmp_path / "new")})
    prepare(settings)
    assert (settings.data_dir / "mlflow" / "mlflow.db").is_file()
    assert (settings.data_dir / "mlflow" / "artifacts").is_dir()
    assert (settings.data_dir / "admin.token").is_file()
