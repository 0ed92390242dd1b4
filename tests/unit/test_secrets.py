"""Secrets stay out of log lines, error bodies, the OpenAPI document and settings reprs."""

from __future__ import annotations

import logging
import pickle
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.api.problems import problem_body
from app.core.access import Role
from app.errors import ErrorCode, Unavailable
from app.logs import REDACTION, configure_logging
from app.settings import (
    MASK,
    StorageSettings,
    redact,
    remember_environment,
    remember_secrets,
)
from app.settings.secrets import url_password, with_password
from testkit.api import StubTracker, build_app
from testkit.auth import Tokens
from testkit.settings import settings_for

BASE = "/api/v1/ml"


def fresh(label: str) -> str:
    """A secret no other test has made known."""
    return f"{label}-{uuid.uuid4().hex[:12]}"


# -- redact: patterns ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "postgresql+psycopg2://mlservice:Tr0ub4dor@db.ml.svc:5432/mlservice",
            "postgresql+psycopg2://mlservice:***@db.ml.svc:5432/mlservice",
        ),
        ("redis://:r3dis-pass@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://default:r3dis-pass@cache:6380", "rediss://default:***@cache:6380"),
        ("mysql://u:pa/ss:w@rd@host/db", "mysql://u:***@host/db"),  # unescaped / : @
        (
            "could not connect to 'postgresql://ml:hunter22@h/db' (timeout)",
            "could not connect to 'postgresql://ml:***@h/db' (timeout)",
        ),
        ("s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/key", "s3://AKIAEXAMPLE:***@bucket/key"),
        (
            "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG aws_access_key_id=AKIAEXAMPLE",
            "AWS_SECRET_ACCESS_KEY=*** aws_access_key_id=AKIAEXAMPLE",  # the id is no secret
        ),
        ("redis:6379,password=r3dis-pass,ssl=true", "redis:6379,password=***,ssl=true"),
        ("host=db user=ml password=hunter22 dbname=x", "host=db user=ml password=*** dbname=x"),
        ("GET /x?access_token=abc.def&page=2", "GET /x?access_token=***&page=2"),
        ("{'password': 'hunter22', 'user': 'ml'}", "{'password': '***', 'user': 'ml'}"),
        ("connect(host='db', password='my pass, 2')", "connect(host='db', password='***')"),
        ('{"secret_key": "wJalrXUtnFEMI"}', '{"secret_key": "***"}'),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload", "Authorization: Bearer ***"),
        ("token mls_0123456789abcdefABCDEF_-xyz used", "token mls_*** used"),
    ],
)
def test_redact_masks_secrets_by_their_shape(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "sqlite:////var/lib/ml/state/service.db",
        "postgresql://mlservice@db.ml.svc:5432/mlservice",
        "http://minio:9000/bucket",
        "s3://ml-artifacts/mlflow",
        "generate max_tokens=256 with temperature=0.2",
        "    if token == expected:",
        "model churn version 3 promoted to production by alice",
        "",
    ],
)
def test_redact_leaves_text_without_secrets_alone(text: str) -> None:
    assert redact(text) == text


def test_url_password_and_with_password_round_trip() -> None:
    url = with_password("postgresql://ml@db:5432/x?sslmode=require", "p@ss/w:rd")
    assert url == "postgresql://ml:p%40ss%2Fw%3Ard@db:5432/x?sslmode=require"
    assert url_password(url) == "p@ss/w:rd"
    assert url_password("postgresql://ml@db/x") is None
    with pytest.raises(ValueError, match="user name"):
        with_password("postgresql://db/x", "pw")
    with pytest.raises(ValueError, match="password already"):
        with_password("postgresql://ml:old@db/x", "pw")


# -- redact: known values --------------------------------------------------------------


def test_remembered_values_are_masked_anywhere_with_their_url_forms() -> None:
    secret = fresh("p@ss/word")
    remember_secrets(SecretStr(secret))
    assert redact(f"auth failed with {secret}!") == f"auth failed with {MASK}!"
    encoded = secret.replace("@", "%40").replace("/", "%2F")
    assert secret not in redact(f"dsn ...{encoded}...") and encoded not in redact(encoded)


def test_short_values_are_masked_by_shape_only() -> None:
    remember_secrets("admin")  # too short to replace everywhere
    assert redact("the admin role") == "the admin role"
    assert redact("postgresql://ml:admin@db/x") == "postgresql://ml:***@db/x"


def test_secret_named_environment_variables_are_masked() -> None:
    aws, redis_password, feast = fresh("aws"), fresh("redis"), fresh("feast")
    remember_environment(
        {
            "AWS_SECRET_ACCESS_KEY": aws,
            "ML_FEAST_REDIS": f"redis:6379,password={redis_password}",
            "ML_FEAST_REGISTRY_URL": f"postgresql+psycopg://feast:{feast}@db/feast",
            "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/eks/token",  # a path, not one
        }
    )
    text = redact(f"boto said {aws}; redis {redis_password}; feast {feast}")
    assert aws not in text and redis_password not in text and feast not in text
    assert redact("/var/run/secrets/eks/token") == "/var/run/secrets/eks/token"


def test_settings_secrets_are_known_where_the_section_is_unpickled() -> None:
    """An actor or replica receives its sections pickled: their secrets become known there."""
    secret = fresh("s3-secret")
    storage = StorageSettings(access_key_id=SecretStr(fresh("AKIA")), secret_access_key=secret)
    assert redact(f"signature with {secret}") != "signature with ***"  # not known yet
    pickle.loads(pickle.dumps(storage))
    assert redact(f"signature with {secret}") == f"signature with {MASK}"


# -- logs ------------------------------------------------------------------------------


@pytest.fixture
def service_logging() -> Iterator[None]:
    """configure_logging changes process-wide loggers: put them back afterwards."""
    names = ("app", "deployments", "actors")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level) for n in names}
    propagate = {n: logging.getLogger(n).propagate for n in names}
    root_handlers = logging.getLogger().handlers[:]
    yield
    for name, (handlers, level) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers, logger.propagate = handlers, propagate[name]
        logger.setLevel(level)
    for handler in root_handlers:
        handler.removeFilter(REDACTION)


def failing_connect(dsn: str) -> None:
    raise ConnectionError(f"could not connect to {dsn}: connection refused")


def test_service_log_lines_hold_no_password(
    service_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    password = fresh("pg")
    dsn = f"postgresql+psycopg2://mlservice:{password}@db.ml.svc:5432/mlservice"
    configure_logging("INFO")
    log = logging.getLogger("app.adapters.registry_store")
    log.info("opening the state store %s", dsn)
    try:
        failing_connect(dsn)
    except ConnectionError:
        log.exception("state store unavailable (%s)", dsn)
    err = capsys.readouterr().err
    assert "opening the state store postgresql+psycopg2://mlservice:***@db.ml.svc" in err
    assert "Traceback" in err and "ConnectionError: could not connect to" in err
    assert password not in err


def test_library_log_lines_through_the_root_are_redacted(
    service_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler()  # stderr, as a library's basicConfig would
    root.addHandler(handler)
    try:
        configure_logging("INFO")
        secret = fresh("key")
        logging.getLogger("botocore.test").warning("AWS_SECRET_ACCESS_KEY=%s", secret)
    finally:
        root.removeHandler(handler)
    err = capsys.readouterr().err
    assert "AWS_SECRET_ACCESS_KEY=***" in err and secret not in err


def test_configure_logging_is_idempotent(service_logging: None) -> None:
    configure_logging("INFO")
    configure_logging("DEBUG")
    (handler,) = logging.getLogger("app").handlers
    assert handler.filters.count(REDACTION) == 1


# -- error bodies and the OpenAPI document ---------------------------------------------


def test_problem_body_holds_no_password() -> None:
    password = fresh("pg")
    dsn = f"postgresql://mlservice:{password}@db/mlservice"
    try:
        failing_connect(dsn)
    except ConnectionError as exc:
        body = problem_body(
            code=ErrorCode.BACKEND_UNAVAILABLE,
            status=503,
            detail=f"The state store is unavailable: {exc}",
            instance="/api/v1/ml/models",
            request_id="r-1",
            context={"store": dsn, "tried": [dsn], "nested": {"url": dsn}, "attempts": 3},
        )
    assert password not in str(body)
    assert body["detail"].startswith("The state store is unavailable: could not connect to")
    assert body["context"]["store"] == "postgresql://mlservice:***@db/mlservice"
    assert body["context"]["attempts"] == 3


def test_error_responses_hold_no_password(tmp_path: Path) -> None:
    tokens, password = Tokens(), fresh("pg")
    dsn = f"postgresql://mlflow:{password}@db/mlflow"

    def down(name: str) -> None:
        raise Unavailable(ErrorCode.TRACKING_STORE_UNAVAILABLE, f"cannot reach {dsn}", store=dsn)

    client = TestClient(build_app(settings_for(tmp_path, tokens), StubTracker(down)))
    response = client.get(f"{BASE}/experiments/1", headers=tokens.header(Role.VIEWER))
    assert response.status_code == 503
    assert response.json()["code"] == ErrorCode.TRACKING_STORE_UNAVAILABLE.value
    assert password not in response.text


def test_openapi_document_holds_no_setting(tmp_path: Path) -> None:
    tokens, password = Tokens(), fresh("pg")
    settings = settings_for(
        tmp_path,
        tokens,
        state={"database_url": f"postgresql://ml:{password}@db/ml"},
        mlflow={"tracking_uri": "postgresql://mlflow@db/mlflow", "tracking_password": password},
    )
    client = TestClient(build_app(settings, StubTracker()))
    document = client.get("/openapi.json").text
    assert password not in document and "db/ml" not in document


def test_settings_repr_holds_no_password(tmp_path: Path) -> None:
    password = fresh("pg")
    settings = settings_for(
        tmp_path,
        Tokens(),
        state={"database_url": f"postgresql+psycopg2://ml:{password}@db/ml"},
        mlflow={"tracking_uri": "postgresql://mlflow@db/mlflow", "tracking_password": password},
        storage={"uri": "s3://b/p", "secret_access_key": password},
    )
    assert settings.state.database_url.endswith(f":{password}@db/ml")  # callers get it whole
    assert password in settings.mlflow.tracking_uri
    for text in (repr(settings), str(settings), repr(settings.state), str(settings.mlflow)):
        assert password not in text
    assert "database_url='postgresql+psycopg2://ml:***@db/ml'" in repr(settings)
