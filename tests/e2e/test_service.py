"""The README's first command, end to end: start, use, stop, start again."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest

from app.core.access import Role
from tests.api_fixtures import Tokens
from tests.integration.model_factory import log_model_run
from tests.service_process import Service

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BASE = "/api/v1/ml"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service(tmp_path_factory.mktemp("service"))
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def first_start(service: Service) -> dict[str, str]:
    """Start on a fresh data directory, with no token configured (a new user's first run);
    create an experiment and a run with the printed token, as the README shows."""
    service.start()
    match = re.search(
        r"admin token \(role: admin\) is in an owner-only file:.*?(/\S+admin\.token)",
        service.log(),
        re.DOTALL,
    )
    assert match, service.log()[-3000:]
    token_file = Path(match.group(1))
    assert token_file == service.data_dir / "admin.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert token not in service.log()
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=service.url, timeout=60) as http:
        experiment = http.post(f"{BASE}/experiments", json={"name": "churn-model"}, headers=auth)
        assert experiment.status_code == 201, experiment.text
        experiment_id = experiment.json()["id"]
        run = http.post(
            f"{BASE}/experiments/{experiment_id}/runs",
            json={
                "name": "mlp-1",
                "params": {"lr": 0.01, "hidden": 64},
                "metrics": [{"key": "accuracy", "value": 0.91, "step": 3}],
            },
            headers=auth,
        )
        assert run.status_code == 201, run.text
    return {"token": token, "experiment_id": experiment_id, "run_id": run.json()["id"]}


def test_mlflow_ui_and_client_see_the_same_experiment_and_run(
    service: Service, first_start: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    page = httpx.get(f"{service.url}/mlflow/", timeout=60)
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"] and "<title>MLflow</title>" in page.text
    assert httpx.get(f"{service.url}/mlflow/static-files/favicon.ico").status_code == 200

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", first_start["token"])
    mlflow.set_tracking_uri(f"{service.url}/mlflow")
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("churn-model")
    assert experiment is not None and experiment.experiment_id == first_start["experiment_id"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == first_start["run_id"]
    assert run.data.params == {"lr": "0.01", "hidden": "64"}
    assert run.data.metrics == {"accuracy": 0.91}
    assert [m.step for m in client.get_metric_history(run.info.run_id, "accuracy")] == [3]


@pytest.fixture(scope="module")
def registered(service: Service, first_start: dict[str, str]) -> dict[str, object]:
    """Before the restart: a model logged through /mlflow, registered, promoted to staging
    (the validation runs as a Ray task in the service's cluster) and approved."""
    os.environ["MLFLOW_TRACKING_TOKEN"] = first_start["token"]
    try:
        logged = log_model_run(
            f"{service.url}/mlflow", str(service.data_dir / "mlflow" / "artifacts"), "e2e-models"
        )
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    auth = {"Authorization": f"Bearer {first_start['token']}"}
    with httpx.Client(base_url=service.url, timeout=300) as http:
        version = http.post(
            f"{BASE}/models", json={"name": "churn", "run_id": logged.run_id}, headers=auth
        )
        assert version.status_code == 201, version.text
        number = version.json()["version"]
        promoted = http.post(
            f"{BASE}/models/churn/promote", json={"version": number, "to": "staging"}, headers=auth
        )
        assert promoted.status_code == 200, promoted.text
        approval = http.post(
            f"{BASE}/models/churn/approvals", json={"version": number}, headers=auth
        )
        assert approval.status_code == 201, approval.text
        model = http.get(f"{BASE}/models/churn", headers=auth).json()
        events = http.get(f"{BASE}/models/churn/audit", headers=auth).json()["events"]
    return {"version": number, "model": model, "events": events}


@pytest.fixture(scope="module")
def second_start(
    service: Service, first_start: dict[str, str], registered: dict[str, object]
) -> Tokens:
    """Stop, then start again with configured tokens for each role."""
    service.stop()
    tokens = Tokens()
    service.start({"ML_AUTH__TOKENS": json.dumps(tokens.entries())})
    return tokens


def test_a_restart_keeps_every_experiment_and_run(
    service: Service, first_start: dict[str, str], second_start: Tokens
) -> None:
    viewer = second_start.header(Role.VIEWER)
    with httpx.Client(base_url=service.url, timeout=60) as http:
        experiments = http.get(f"{BASE}/experiments", params={"name": "churn"}, headers=viewer)
        assert [e["id"] for e in experiments.json()["items"]] == [first_start["experiment_id"]]
        run = http.get(
            f"{BASE}/experiments/{first_start['experiment_id']}/runs/{first_start['run_id']}",
            headers=viewer,
        )
        assert run.status_code == 200
        assert run.json()["params"] == {"lr": "0.01", "hidden": "64"}
        assert run.json()["metrics"]["accuracy"]["value"] == 0.91


def test_a_restart_keeps_the_registry(
    service: Service,
    registered: dict[str, Any],
    second_start: Tokens,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    viewer = second_start.header(Role.VIEWER)
    with httpx.Client(base_url=service.url, timeout=60) as http:
        model = http.get(f"{BASE}/models/churn", headers=viewer).json()
        audit = http.get(f"{BASE}/models/churn/audit", headers=viewer).json()
    before = registered["model"]
    assert (
        model["stages"]
        == before["stages"]
        == {
            "development": [],
            "staging": [registered["version"]],
            "production": [],
            "archived": [],
        }
    )
    assert model["approvals"] == before["approvals"] and len(model["approvals"]) == 1
    assert audit["events"] == registered["events"] and audit["verification"]["valid"]
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", second_start.by_role[Role.VIEWER])
    aliases = mlflow.MlflowClient(f"{service.url}/mlflow").get_registered_model("churn").aliases
    assert {k: int(v) for k, v in aliases.items()} == {"staging": registered["version"]}


def test_writes_need_engineer_and_reads_need_viewer(
    service: Service, first_start: dict[str, str], second_start: Tokens
) -> None:
    experiment_id, run_id = first_start["experiment_id"], first_start["run_id"]
    writes = [
        ("POST", f"{BASE}/experiments", {"name": "new"}),
        ("POST", f"{BASE}/experiments/{experiment_id}/runs", {"name": "r"}),
        ("PATCH", f"{BASE}/experiments/{experiment_id}/runs/{run_id}", {"tags": {"a": "b"}}),
    ]
    reads = [
        f"{BASE}/experiments",
        f"{BASE}/experiments/{experiment_id}",
        f"{BASE}/experiments/{experiment_id}/runs",
        f"{BASE}/experiments/{experiment_id}/runs/{run_id}",
        f"{BASE}/experiments/{experiment_id}/runs/{run_id}/metrics/accuracy",
    ]
    viewer = second_start.header(Role.VIEWER)
    with httpx.Client(base_url=service.url, timeout=60) as http:
        for method, path, body in writes:
            anonymous = http.request(method, path, json=body)
            assert anonymous.status_code == 401, (method, path)
            assert anonymous.json()["code"] == "unauthenticated"
            forbidden = http.request(method, path, json=body, headers=viewer)
            assert forbidden.status_code == 403, (method, path)
            assert forbidden.json()["code"] == "forbidden"
        for path in reads:
            assert http.get(path).status_code == 401, path
            assert http.get(path, headers=viewer).status_code == 200, path
        names = [e["name"] for e in http.get(f"{BASE}/experiments", headers=viewer).json()["items"]]
        assert "new" not in names


def test_errors_are_problem_json(
    service: Service, first_start: dict[str, str], second_start: Tokens
) -> None:
    engineer = second_start.header(Role.ENGINEER)
    with httpx.Client(base_url=service.url, timeout=60) as http:
        invalid = http.post(f"{BASE}/experiments", json={"name": ""}, headers=engineer)
        assert invalid.status_code == 422
        assert invalid.headers["content-type"] == "application/problem+json"
        assert invalid.json()["errors"][0]["field"] == "name"
        assert invalid.json()["request_id"] == invalid.headers["x-request-id"]
        missing = http.get(f"{BASE}/experiments/987654", headers=engineer)
        assert missing.status_code == 404 and missing.json()["code"] == "experiment_not_found"
        duplicate = http.post(f"{BASE}/experiments", json={"name": "churn-model"}, headers=engineer)
        assert duplicate.status_code == 409
        assert duplicate.json()["code"] == "experiment_already_exists"
        old_token = {"Authorization": f"Bearer {first_start['token']}"}
        assert http.get(f"{BASE}/experiments", headers=old_token).status_code == 401
