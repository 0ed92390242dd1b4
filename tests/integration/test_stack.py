"""scripts/stack: the local production stack (PostgreSQL, Redis, s3rver), started for real.

One stack per module, in a temporary ML_STACK_DIR on free ports below 32768; each server's
data must survive a restart of that server. No Ray here.
"""

from __future__ import annotations

import contextlib
import re
import stat
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest

from testkit.stack import ROOT, Stack, listening, local_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with local_stack() as started:  # its teardown checks every server stopped, ports closed
        yield started


def _pg_connect(url: str) -> Any:
    # SQLAlchemy's driver suffix (+psycopg2, +psycopg) is not part of a libpq URI.
    return psycopg2.connect(
        re.sub(r"^postgresql\+psycopg2?://", "postgresql://", url), connect_timeout=5
    )


def _sql(url: str, statement: str, *params: str) -> list[tuple[object, ...]]:
    """Run one statement in its own connection (committed, closed); its rows, if any."""
    with contextlib.closing(_pg_connect(url)) as connection:
        with connection, connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else []


def test_env_file_and_secrets(stack: Stack) -> None:
    env_file = stack.directory / "stack.env"
    password_file = stack.directory / "secrets" / "postgres_password"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password = password_file.read_text().strip()
    assert len(password) >= 32
    pg, redis, s3 = stack.ports["postgres"], stack.ports["redis"], stack.ports["s3"]
    database = f"mlservice:{password}@127.0.0.1:{pg}"
    assert stack.settings() == {
        "ML_MLFLOW__TRACKING_URI": f"postgresql+psycopg2://{database}/mlflow",
        "ML_MLFLOW__ARTIFACT_ROOT": "s3://ml-artifacts/mlflow",
        "ML_STATE__DATABASE_URL": f"postgresql+psycopg2://{database}/mlservice",
        "ML_STORAGE__URI": "s3://ml-artifacts/data",
        "ML_STORAGE__ENDPOINT_URL": f"http://127.0.0.1:{s3}",
        "AWS_ACCESS_KEY_ID": "S3RVER",
        "AWS_SECRET_ACCESS_KEY": "S3RVER",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3}",
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
        "ML_FEAST_REGISTRY_URL": f"postgresql+psycopg://{database}/feast",
        "ML_FEAST_REDIS": f"127.0.0.1:{redis}",
        "ML_STACK_DIR": str(stack.directory),
        "ML_STACK_PG_PORT": str(pg),
        "ML_STACK_REDIS_PORT": str(redis),
        "ML_STACK_S3_PORT": str(s3),
        "ML_DATA_DIR": str(ROOT / "data" / "prod"),
        "ML_AUTH__BOOTSTRAP_ADMIN_TOKEN": "true",
        "ML_FEATURES__DEMO_DATA": "true",
        "ML_MLFLOW__ALLOWED_HOSTS": "[]",
    }
    assert stack.run("env").stdout == env_file.read_text()
    assert password not in stack.up_output


def test_status_and_idempotent_up(stack: Stack) -> None:
    code, states = stack.status()
    assert code == 0
    assert states == {"postgres": "running", "redis": "running", "s3": "running"}
    before = stack.run("status").stdout
    again = stack.run("up")
    assert "already running" in again.stderr
    assert stack.run("status").stdout == before  # same servers, same pids


def test_postgres_databases_and_row_survive_restart(stack: Stack) -> None:
    settings = stack.settings()
    owner = (
        "SELECT current_database(), current_user, pg_get_userbyid(datdba) FROM pg_database"
        " WHERE datname = current_database()"
    )
    for key, database in (
        ("ML_MLFLOW__TRACKING_URI", "mlflow"),
        ("ML_STATE__DATABASE_URL", "mlservice"),
        ("ML_FEAST_REGISTRY_URL", "feast"),
    ):
        assert _sql(settings[key], owner) == [(database, "mlservice", "mlservice")]
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(
            host="127.0.0.1",
            port=stack.ports["postgres"],
            user="mlservice",
            password="wrong",
            dbname="mlservice",
            connect_timeout=5,
        )

    value = uuid.uuid4().hex
    url = settings["ML_STATE__DATABASE_URL"]
    _sql(url, "CREATE TABLE stack_check (value text)")
    _sql(url, "INSERT INTO stack_check VALUES (%s)", value)

    stack.run("stop", "postgres")
    code, states = stack.status()
    assert code == 3 and states["postgres"] == "stopped" and states["redis"] == "running"
    with pytest.raises(psycopg2.OperationalError):
        _pg_connect(url)
    stack.run("start", "postgres")
    assert stack.status()[0] == 0

    assert _sql(url, "SELECT value FROM stack_check") == [(value,)]


def test_redis_key_survives_restart(stack: Stack) -> None:
    assert stack.redis_cli("config", "get", "appendonly").splitlines() == ["appendonly", "yes"]
    key, value = f"stack-check:{uuid.uuid4().hex}", uuid.uuid4().hex
    assert stack.redis_cli("set", key, value) == "OK"

    stack.run("stop", "redis")
    code, states = stack.status()
    assert code == 3 and states["redis"] == "stopped"
    assert not listening(stack.ports["redis"])
    stack.run("start", "redis")
    assert stack.status()[0] == 0

    assert stack.redis_cli("get", key) == value


def test_s3_object_survives_restart(stack: Stack) -> None:
    key, body = f"data/stack-check/{uuid.uuid4().hex}.txt", uuid.uuid4().bytes
    stack.s3().put_object(Bucket="ml-artifacts", Key=key, Body=body)

    stack.run("stop", "s3")
    code, states = stack.status()
    assert code == 3 and states["s3"] == "stopped"
    assert not listening(stack.ports["s3"])
    stack.run("start", "s3")
    assert stack.status()[0] == 0

    client = stack.s3()
    assert [bucket["Name"] for bucket in client.list_buckets()["Buckets"]] == ["ml-artifacts"]
    assert client.get_object(Bucket="ml-artifacts", Key=key)["Body"].read() == body


def test_s3_pages_listings_and_keeps_directory_markers(stack: Stack) -> None:
    """What Ray Train and pyarrow do: a directory marker object, files under it, and
    listings of one key at a time (their continuation tokens need Node's legacy
    OpenSSL provider in s3rver)."""
    client, prefix = stack.s3(), f"data/pages-{uuid.uuid4().hex}/"
    client.put_object(Bucket="ml-artifacts", Key=prefix, Body=b"")
    for name in ("a", "b", "c"):
        client.put_object(Bucket="ml-artifacts", Key=f"{prefix}{name}", Body=name.encode())
    keys, token = [], None
    while True:
        extra = {"ContinuationToken": token} if token else {}
        page = client.list_objects_v2(Bucket="ml-artifacts", Prefix=prefix, MaxKeys=1, **extra)
        keys += [item["Key"] for item in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            break
        token = page["NextContinuationToken"]
    assert keys == [prefix, f"{prefix}a", f"{prefix}b", f"{prefix}c"]


def test_down_and_up_keep_everything(stack: Stack) -> None:
    key, value = f"stack-check:{uuid.uuid4().hex}", uuid.uuid4().hex
    assert stack.redis_cli("set", key, value) == "OK"
    s3_key, body = f"mlflow/stack-check/{uuid.uuid4().hex}", uuid.uuid4().bytes
    stack.s3().put_object(Bucket="ml-artifacts", Key=s3_key, Body=body)
    settings = stack.settings()
    url = settings["ML_MLFLOW__TRACKING_URI"]
    _sql(url, "CREATE TABLE stack_down (value text)")
    _sql(url, "INSERT INTO stack_down VALUES (%s)", value)

    stack.run("down")
    code, states = stack.status()
    assert code == 3 and set(states.values()) == {"stopped"}
    assert not any(listening(port) for port in stack.ports.values())
    stack.run("up")
    assert stack.status()[0] == 0
    assert stack.settings() == settings  # the same password

    assert stack.redis_cli("get", key) == value
    assert stack.s3().get_object(Bucket="ml-artifacts", Key=s3_key)["Body"].read() == body
    assert _sql(url, "SELECT value FROM stack_down") == [(value,)]
