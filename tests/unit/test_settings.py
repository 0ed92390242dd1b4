from pathlib import Path

import pytest

from app.core.access import Role
from app.settings import SettingsError, load_settings

PROJECT_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.upper().startswith("ML_"):
            monkeypatch.delenv(key)


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    directory = tmp_path / "configs"
    directory.mkdir()
    write(directory, "base.yaml", "data_dir: base-data\napi:\n  default_page_size: 10\n")
    write(directory, "dev.yaml", "api:\n  default_page_size: 20\n")
    write(directory, "prod.yaml", "log_level: WARNING\n")
    return directory


def test_project_layers_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for env in ("dev", "prod"):
        settings = load_settings(PROJECT_CONFIGS, env)
        assert settings.env == env
    assert load_settings(PROJECT_CONFIGS, "dev").auth.bootstrap_admin_token
    assert not load_settings(PROJECT_CONFIGS, "prod").auth.bootstrap_admin_token


def test_precedence(configs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(configs, "dev").api.default_page_size == 20  # env layer over base
    assert load_settings(configs, "prod").api.default_page_size == 10  # base only
    monkeypatch.setenv("ML_API__DEFAULT_PAGE_SIZE", "30")
    assert load_settings(configs, "dev").api.default_page_size == 30  # environment over files
    overridden = load_settings(configs, "dev", {"api": {"default_page_size": 40}})
    assert overridden.api.default_page_size == 40  # explicit over everything
    assert overridden.api.max_page_size == 500  # untouched siblings keep their defaults


def test_env_picks_the_layer(configs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_ENV", "prod")
    assert load_settings(configs).log_level == "WARNING"


def test_data_dir_defaults_resolve_to_absolute_paths(
    configs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(configs, "dev")
    data = tmp_path / "base-data"
    assert settings.data_dir == data
    assert settings.mlflow.tracking_uri == f"sqlite:///{data}/mlflow/mlflow.db"
    assert settings.mlflow.artifact_root == str(data / "mlflow" / "artifacts")
    assert settings.state.database_url == f"sqlite:///{data}/state/service.db"
    assert settings.auth.admin_token_file == data / "admin.token"


def test_bad_value_names_the_file(configs: Path) -> None:
    write(configs, "dev.yaml", "api:\n  default_page_size: lots\n")
    with pytest.raises(SettingsError) as failed:
        load_settings(configs, "dev")
    message = str(failed.value)
    assert str(configs / "dev.yaml") in message
    assert "api.default_page_size" in message


def test_bad_value_in_base_names_base(configs: Path) -> None:
    write(configs, "base.yaml", "mlflow:\n  tracking_uri: not-a-uri\n")
    with pytest.raises(SettingsError) as failed:
        load_settings(configs, "dev")
    assert str(configs / "base.yaml") in str(failed.value)
    assert "mlflow.tracking_uri" in str(failed.value)


def test_unknown_key_is_refused_with_its_file(configs: Path) -> None:
    write(configs, "dev.yaml", "mlflw:\n  tracking_uri: sqlite:///x.db\n")
    with pytest.raises(SettingsError) as failed:
        load_settings(configs, "dev")
    assert str(configs / "dev.yaml") in str(failed.value)
    assert "mlflw" in str(failed.value)


def test_bad_environment_variable_is_named(configs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_API__MAX_PAGE_SIZE", "-3")
    with pytest.raises(SettingsError) as failed:
        load_settings(configs, "dev")
    assert "environment variable ML_API__MAX_PAGE_SIZE" in str(failed.value)


def test_malformed_yaml_names_the_file(configs: Path) -> None:
    write(configs, "dev.yaml", "api: [unclosed\n")
    with pytest.raises(SettingsError) as failed:
        load_settings(configs, "dev")
    assert str(configs / "dev.yaml") in str(failed.value)


def test_missing_layer_lists_the_known_ones(configs: Path) -> None:
    with pytest.raises(SettingsError) as failed:
        load_settings(configs, "staging")
    assert "staging.yaml" in str(failed.value) and "dev, prod" in str(failed.value)


def test_tokens_from_the_environment(configs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    digest = "ab" * 32
    monkeypatch.setenv(
        "ML_AUTH__TOKENS", f'[{{"name": "ci", "roles": ["viewer"], "sha256": "{digest}"}}]'
    )
    tokens = load_settings(configs, "dev").auth.tokens
    assert [(t.name, t.roles, t.sha256) for t in tokens] == [("ci", (Role.VIEWER,), digest)]


def test_plaintext_token_is_refused(configs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "ML_AUTH__TOKENS", '[{"name": "ci", "roles": ["viewer"], "sha256": "mls_plaintext"}]'
    )
    with pytest.raises(SettingsError) as failed:
        load_settings(configs, "dev")
    assert "ML_AUTH__TOKENS" in str(failed.value)


# -- secrets from files ----------------------------------------------------------------


def test_a_setting_comes_from_the_file_its_FILE_variable_names(
    configs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgresql+psycopg2://ml:s3cret-from-file@db:5432/ml"
    secret = write(tmp_path, "db_url", url + "\n")  # as `kubectl create secret` writes it
    monkeypatch.setenv("ML_STATE__DATABASE_URL_FILE", str(secret))
    monkeypatch.setenv("ML_API__MAX_PAGE_SIZE_FILE", str(write(tmp_path, "size", "70\n\n")))
    settings = load_settings(configs, "dev")
    assert settings.state.database_url == url
    assert settings.api.max_page_size == 70


def test_a_FILE_variable_takes_the_environment_precedence(
    configs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(configs, "dev.yaml", "api:\n  default_page_size: 20\n")
    monkeypatch.setenv("ML_API__DEFAULT_PAGE_SIZE_FILE", str(write(tmp_path, "size", "30")))
    assert load_settings(configs, "dev").api.default_page_size == 30  # over the files
    overridden = load_settings(configs, "dev", {"api": {"default_page_size": 40}})
    assert overridden.api.default_page_size == 40  # under explicit values


def test_complex_values_come_from_files_too(
    configs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = "cd" * 32
    entries = f'[{{"name": "ci", "roles": ["viewer"], "sha256": "{digest}"}}]'
    monkeypatch.setenv("ML_AUTH__TOKENS_FILE", str(write(tmp_path, "tokens.json", entries)))
    assert [t.sha256 for t in load_settings(configs, "dev").auth.tokens] == [digest]


def test_a_setting_named_FILE_is_an_ordinary_variable(
    configs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_AUTH__ADMIN_TOKEN_FILE", str(tmp_path / "no-such-file"))
    monkeypatch.setenv("ML_FEATURES__CONFIG_FILE", "feature_store.prod.yaml")
    settings = load_settings(configs, "dev")
    assert settings.auth.admin_token_file == tmp_path / "no-such-file"
    assert settings.features.config_file == "feature_store.prod.yaml"


def test_a_variable_and_its_FILE_both_set_is_refused(
    configs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_STATE__DATABASE_URL", "postgresql://ml@db/ml")
    monkeypatch.setenv("ML_STATE__DATABASE_URL_FILE", str(write(tmp_path, "url", "x")))
    with pytest.raises(SettingsError) as failed:
        load_settings(configs, "dev")
    message = str(failed.value)
    assert "ML_STATE__DATABASE_URL and ML_STATE__DATABASE_URL_FILE are both set" in message


def test_a_missing_file_names_the_variable_and_the_path(
    configs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "secrets" / "db_url"
    monkeypatch.setenv("ML_STATE__DATABASE_URL_FILE", str(missing))
    with pytest.raises(SettingsError) as failed:
        load_settings(configs, "dev")
    message = str(failed.value)
    assert "ML_STATE__DATABASE_URL_FILE" in message and str(missing) in message
    assert "No such file" in message


def test_a_bad_value_from_a_file_names_the_file(
    configs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = write(tmp_path, "uri", "not-a-uri-but-a-s3cret\n")
    monkeypatch.setenv("ML_MLFLOW__TRACKING_URI_FILE", str(bad))
    with pytest.raises(SettingsError) as failed:
        load_settings(configs, "dev")
    message = str(failed.value)
    assert f"file {bad} (environment variable ML_MLFLOW__TRACKING_URI_FILE)" in message
    assert "mlflow.tracking_uri" in message and "s3cret" not in message


def test_a_password_given_apart_is_folded_into_its_url(
    configs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(configs, "prod.yaml", "state:\n  database_url: postgresql://ml@db:5432/ml\n")
    monkeypatch.setenv("ML_STATE__DATABASE_PASSWORD_FILE", str(write(tmp_path, "pw", "p@ss/1\n")))
    state = load_settings(configs, "prod").state
    assert state.database_url == "postgresql://ml:p%40ss%2F1@db:5432/ml"
    assert state.database_password is None  # folded in: the section is complete as typed
    assert "p%40ss" not in repr(state)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "needs `database_url` set"),
        ("postgresql://db:5432/ml", "needs a URL with a user name"),
        ("postgresql://ml:old@db:5432/ml", "password already"),
    ],
)
def test_a_password_apart_needs_a_url_to_go_into(
    configs: Path, monkeypatch: pytest.MonkeyPatch, url: str, problem: str
) -> None:
    monkeypatch.setenv("ML_STATE__DATABASE_URL", url)
    monkeypatch.setenv("ML_STATE__DATABASE_PASSWORD", "pw")
    with pytest.raises(SettingsError) as failed:
        load_settings(configs, "dev")
    message = str(failed.value)
    assert "environment variable ML_STATE__DATABASE_PASSWORD" in message and problem in message
    assert "old" not in message


def test_settings_repr_shows_no_url_password(
    configs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_MLFLOW__TRACKING_URI", "postgresql://mlflow:c0rrect-h0rse@db/mlflow")
    settings = load_settings(configs, "dev")
    assert settings.mlflow.tracking_uri == "postgresql://mlflow:c0rrect-h0rse@db/mlflow"
    assert "c0rrect-h0rse" not in repr(settings) and "c0rrect-h0rse" not in str(settings)
    assert "tracking_uri='postgresql://mlflow:***@db/mlflow'" in repr(settings.mlflow)
