"""A data scientist's notebook on another machine: only the service's URL and a token.

The service's MLflow deployment (its gateway and settings, under uvicorn; the Ray-served
one is the same class, see tests/e2e) runs on one side; the notebook runs in its own mount
namespace, where the server's whole directory is an empty tmpfs, so any server path it
were given would fail. It logs a run and a pyfunc model, loads the model back, and the
service's registry adapter then reads that model from the artifact store. Both stores:
a local directory (the embedded profile) and an S3 bucket (the production profile, on a
real S3-compatible server).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pytest

from app.core.access import mint_token, token_digest
from testkit.s3 import moto_s3
from testkit.service import free_port
from testkit.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
KEY_ID, SECRET = "notebook-test", "notebook-test-secret"

pytestmark = pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server on loopback, with the bucket."""
    with moto_s3("ml-artifacts", key_id=KEY_ID, secret=SECRET) as endpoint:
        yield endpoint


@pytest.fixture(params=["local", "s3"])
def mlflow_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    server_dir = tmp_path_factory.mktemp("server")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    if request.param == "local":
        artifact_root = str(server_dir / "artifacts")
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        artifact_root = f"s3://ml-artifacts/{server_dir.name}"
        env.update(
            MLFLOW_S3_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID=KEY_ID,
            AWS_SECRET_ACCESS_KEY=SECRET,
            AWS_DEFAULT_REGION="us-east-1",
        )
    token, port = mint_token(), free_port()
    tracking_uri = f"sqlite:///{server_dir / 'mlflow.db'}"
    command = [sys.executable, "-m", "tests.integration.mlflow_remote", "server", str(port)]
    log = (server_dir / "server.log").open("w")
    server = subprocess.Popen(
        [*command, tracking_uri, artifact_root, token_digest(token)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/mlflow"
    try:

        def answers() -> bool:
            assert server.poll() is None, (server_dir / "server.log").read_text()[-3000:]
            return httpx.get(f"{url}/health", timeout=2).status_code == 200

        wait_for(answers, "the MLflow server did not start")
        yield {
            "url": url,
            "token": token,
            "server_dir": str(server_dir),
            "tracking_uri": tracking_uri,
            "artifact_root": artifact_root,
            **{k: env[k] for k in ("MLFLOW_S3_ENDPOINT_URL",) if k in env},
        }
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def run_notebook(server: dict[str, str]) -> dict[str, object]:
    """The notebook, in a mount namespace where the server's directory is empty."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": "/tmp",
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_TOKEN": server["token"],
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }  # no S3 keys, no endpoint: nothing but the URL and the token
    script = (
        f"mount -t tmpfs none {server['server_dir']} && "
        f"exec {sys.executable} -m tests.integration.mlflow_remote client {server['url']}"
    )
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script],
        cwd="/tmp",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.fixture
def restore_tracking_uri() -> Iterator[None]:
    before = mlflow.get_tracking_uri()
    yield
    mlflow.set_tracking_uri(before)


@pytest.mark.usefixtures("restore_tracking_uri")
def test_a_notebook_logs_and_loads_a_model_with_only_the_url_and_a_token(
    mlflow_server: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = run_notebook(mlflow_server)

    assert seen["predictions"] == [3.0, 8.0]
    assert seen["registered"] == [1, 2]
    assert str(seen["registered_source"]).startswith("mlflow-artifacts:/")
    for key in ("run_artifact_uri", "experiment_location", "model_artifact_location"):
        assert str(seen[key]).startswith("mlflow-artifacts:/"), (key, seen[key])
    assert mlflow_server["server_dir"] not in json.dumps(seen)

    # The service's side reads the same model from the store's real location.
    from app.adapters.mlflow_registry import MlflowModelCatalog

    for key in ("MLFLOW_S3_ENDPOINT_URL",):
        if key in mlflow_server:
            monkeypatch.setenv(key, mlflow_server[key])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    source = MlflowModelCatalog(mlflow_server["tracking_uri"]).describe(
        str(seen["run_id"]), "model"
    )
    assert source.uri == seen["model_uri"]
    assert source.metrics == {"accuracy": 0.93}
    assert len(source.artifact_digest) == 64
    run = mlflow.MlflowClient(mlflow_server["tracking_uri"]).get_run(str(seen["run_id"]))
    assert run.info.artifact_uri.startswith(
        (mlflow_server["artifact_root"], f"file://{mlflow_server['artifact_root']}")
    )
