"""Start-up preparation on a real data directory and MLflow store."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from app.core.access import Role, TokenBook, token_digest
from app.settings import Settings, SettingsError, load_settings
from deployments.startup import BOOTSTRAP_TOKEN_NAME, prepare
from testkit.auth import Tokens
from testkit.settings import CONFIGS

pytestmark = pytest.mark.integration


def fresh(tmp_path: Path, mlflow_template: Path, **overrides: object) -> Settings:
    data = tmp_path / "data"
    (data / "mlflow").mkdir(parents=True, exist_ok=True)
    shutil.copy(mlflow_template, data / "mlflow" / "mlflow.db")
    return load_settings(CONFIGS, "dev", {"data_dir": str(data), **overrides})


def test_dev_start_generates_an_owner_only_admin_token_once(
    tmp_path: Path, mlflow_template: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = fresh(tmp_path, mlflow_template)
    prepared = prepare(settings, announce=True)
    token_file = settings.data_dir / "admin.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    (entry,) = prepared.auth.tokens
    assert (entry.name, entry.roles, entry.sha256) == (
        BOOTSTRAP_TOKEN_NAME,
        (Role.ADMIN,),
        token_digest(token),
    )
    printed = capsys.readouterr()
    assert str(token_file) in printed.err
    assert token not in printed.err + printed.out  # the path is printed, never the token

    token_file.chmod(0o644)
    again = prepare(settings)
    assert again.auth.tokens == prepared.auth.tokens  # a restart keeps the same token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    principal = TokenBook.of((t.name, t.roles, t.sha256) for t in again.auth.tokens)
    assert principal.principal_for(token) is not None


def test_configured_tokens_mean_no_generated_token(tmp_path: Path, mlflow_template: Path) -> None:
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
