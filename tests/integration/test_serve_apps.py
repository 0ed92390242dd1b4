"""The Serve applications built by the builders, on a real local Ray cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest
import ray
from mlflow.exceptions import MlflowException

from app.core.access import Role
from app.errors import Conflict, ErrorCode, NotFound
from testkit.auth import Tokens
from testkit.ingress import shipped_options
from tests.integration.conftest import haproxy_processes
from tests.integration.ml_app import running_ml_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE = "/api/v1/ml"


@ray.remote
def raise_not_found() -> None:
    raise NotFound(ErrorCode.EXPERIMENT_NOT_FOUND, "gone", experiment_id="7")


@ray.remote
class Refuser:
    def refuse(self) -> None:
        raise Conflict(ErrorCode.EXPERIMENT_ALREADY_EXISTS, "taken", name="churn")


def test_domain_errors_keep_their_class_and_code_across_ray(ray_cluster: None) -> None:
    with pytest.raises(NotFound) as from_task:
        ray.get(raise_not_found.remote())
    assert from_task.value.code is ErrorCode.EXPERIMENT_NOT_FOUND
    assert from_task.value.context == {"experiment_id": "7"}
    actor = Refuser.remote()  # type: ignore[attr-defined]
    with pytest.raises(Conflict) as from_actor:
        ray.get(actor.refuse.remote())
    assert from_actor.value.code is ErrorCode.EXPERIMENT_ALREADY_EXISTS
    ray.kill(actor)


@pytest.fixture(scope="module")
def served(
    ray_cluster: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Tokens]]:
    data = tmp_path_factory.mktemp("served") / "data"
    with running_ml_app(data, mlflow=True) as app:
        yield app.url, app.tokens


def test_the_apps_run_as_serve_config_yaml_deploys_them_behind_haproxy(
    served: tuple[str, Tokens], dashboard_url: str
) -> None:
    """The topology these integration tests run on is the shipped one: HAProxy (through
    the service's wrapper, which adds deploy/haproxy/frontend.cfg) answers on Serve's port,
    and every deployment has serve_config.yaml's options."""
    url, _ = served
    commands = [p.cmdline() for p in haproxy_processes()]
    assert commands, "no HAProxy process in this session's cluster"
    assert all(any(arg.endswith(".ml") for arg in c) for c in commands), commands
    # an unknown path is answered by the app behind HAProxy, as problem+json
    missing = httpx.get(f"{url}/api/v1/ml/no-such-thing", timeout=30)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")

    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    # what `serve status` reads: the dashboard's /api/serve/applications/
    details = ServeSubmissionClient(dashboard_url).get_serve_details()
    for app_name in ("ml", "mlflow"):
        deployments = details["applications"][app_name]["deployments"]
        for name, wanted in shipped_options(app_name).items():
            config = deployments[name]["deployment_config"]
            for key, value in wanted.items():
                assert _holds(config[key], value), (name, key, config[key])


def _holds(running: Any, wanted: Any) -> bool:
    """`running` has `wanted`: equal, or for a dict (autoscaling_config, ray_actor_options
    and its runtime_env, which Serve merges with the job's) every wanted key, recursively."""
    if isinstance(wanted, dict):
        return isinstance(running, dict) and all(
            k in running and _holds(running[k], v) for k, v in wanted.items()
        )
    return bool(running == wanted)


def test_errors_cross_a_serve_handle(served: tuple[str, Tokens]) -> None:
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0.1})
    class Failing:
        def __call__(self) -> None:
            raise NotFound(ErrorCode.RUN_NOT_FOUND, "no run", run_id="r1")

    handle = serve.run(Failing.bind(), name="failing", route_prefix=None)
    try:
        with pytest.raises(NotFound) as caught:
            handle.remote().result(timeout_s=60)
        assert caught.value.code is ErrorCode.RUN_NOT_FOUND
    finally:
        serve.delete("failing")


def test_the_api_through_serve(served: tuple[str, Tokens]) -> None:
    url, tokens = served
    with httpx.Client(base_url=url, timeout=60) as http:
        health = http.get(f"{BASE}/health")
        assert health.status_code == 200, health.text
        components = {c["name"]: c["status"] for c in health.json()["components"]}
        assert components == {
            "ray": "ok",
            "mlflow_store": "ok",
            "state_store": "ok",
            "artifact_store": "ok",
            "storage": "ok",
            "registry": "ok",
            "traffic": "ok",
            "monitor": "ok",
            "feature_online_store": "ok",
        }

        created = http.post(
            f"{BASE}/experiments", json={"name": "served"}, headers=tokens.header(Role.ENGINEER)
        )
        assert created.status_code == 201, created.text
        assert len(created.headers.get_list("x-request-id")) == 1

        refused = http.get(
            f"{BASE}/experiments/999",
            headers={**tokens.header(Role.VIEWER), "x-request-id": "trace-abc"},
        )
        assert refused.status_code == 404
        assert refused.headers.get_list("x-request-id") == ["trace-abc"]
        assert refused.json()["request_id"] == "trace-abc"
        assert http.get("/docs").status_code == 200
        assert f"{BASE}/experiments" in http.get("/openapi.json").json()["paths"]


def test_mlflow_inside_ray_behind_the_tokens(
    served: tuple[str, Tokens], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, tokens = served
    page = httpx.get(f"{url}/mlflow/", timeout=60)
    assert page.status_code == 200 and "<title>MLflow</title>" in page.text

    mlflow.set_tracking_uri(f"{url}/mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    with pytest.raises(MlflowException, match="401"):
        mlflow.MlflowClient().search_experiments()

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", tokens.by_role[Role.ENGINEER])
    client = mlflow.MlflowClient()
    experiment_id = client.create_experiment("from-notebook")
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "accuracy", 0.9)
    artifact = tmp_path / "notes.txt"
    artifact.write_text("hello")
    client.log_artifact(run.info.run_id, str(artifact))
    client.set_terminated(run.info.run_id)

    viewer = tokens.header(Role.VIEWER)
    runs = httpx.get(f"{url}{BASE}/experiments/{experiment_id}/runs", headers=viewer).json()
    assert [r["metrics"]["accuracy"]["value"] for r in runs["items"]] == [0.9]
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["notes.txt"]
