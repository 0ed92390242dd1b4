"""The README's first command, end to end: start, use, stop, start again."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import stat
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest

from app.core.access import Role
from testkit.auth import Tokens
from testkit.models import log_model_run
from testkit.service import Service

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BASE = "/api/v1/ml"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service(tmp_path_factory.mktemp("service"), model_server_replicas=2)
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
def registered(service: Service, first_start: dict[str, str]) -> dict[str, Any]:
    """Before the restart: two models logged through /mlflow and registered, promoted to
    staging (their validation runs as a Ray task in the service's cluster), the first
    approved; both deployed as a 50/50 A/B test, with the variant each key got."""
    os.environ["MLFLOW_TRACKING_TOKEN"] = first_start["token"]
    try:
        runs = [
            log_model_run(
                f"{service.url}/mlflow",
                str(service.data_dir / "mlflow" / "artifacts"),
                "e2e-models",
                seed=seed,
            )
            for seed in (1, 2)
        ]
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    auth = {"Authorization": f"Bearer {first_start['token']}"}
    with httpx.Client(base_url=service.url, timeout=300, headers=auth) as http:
        numbers = []
        for logged in runs:
            version = http.post(f"{BASE}/models", json={"name": "churn", "run_id": logged.run_id})
            assert version.status_code == 201, version.text
            numbers.append(version.json()["version"])
        for number in numbers:  # live traffic is for validated (staging) versions only
            promoted = http.post(
                f"{BASE}/models/churn/promote", json={"version": number, "to": "staging"}
            )
            assert promoted.status_code == 200, promoted.text
        approval = http.post(f"{BASE}/models/churn/approvals", json={"version": numbers[0]})
        assert approval.status_code == 201, approval.text
        deployed = http.post(
            f"{BASE}/models/churn/deploy",
            json={
                "strategy": "ab",
                "variants": [
                    {"version": numbers[0], "weight": 50},
                    {"version": numbers[1], "weight": 50},
                ],
            },
        )
        assert deployed.status_code == 200, deployed.text
        sticky = sticky_variants(http, [f"customer-{i}" for i in range(60)])
        model = http.get(f"{BASE}/models/churn").json()
        events = http.get(f"{BASE}/models/churn/audit").json()["events"]
    return {
        "version": numbers[0],
        "versions": numbers,
        "model": model,
        "events": events,
        "sticky": sticky,
    }


def sticky_variants(http: httpx.Client, keys: list[str]) -> dict[str, str]:
    variants = {}
    for key in keys:
        for _ in range(50):  # the ingress picks the new routing table up within moments
            answer = http.post(
                f"{BASE}/predict",
                json={"model": "churn", "inputs": [[0.1, 0.2, 0.3, 0.4]], "request_key": key},
            )
            if answer.status_code == 200:
                break
            time.sleep(0.1)
        assert answer.status_code == 200, answer.text
        variants[key] = answer.json()["variant"]
    assert set(variants.values()) == {"v1", "v2"}
    return variants


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
            "staging": [registered["versions"][1], registered["version"]],  # newest first
            "production": [],
            "archived": [],
        }
    )
    assert model["approvals"] == before["approvals"] and len(model["approvals"]) == 1
    assert audit["events"][: len(registered["events"])] == registered["events"]
    assert audit["verification"]["valid"]
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", second_start.by_role[Role.VIEWER])
    aliases = mlflow.MlflowClient(f"{service.url}/mlflow").get_registered_model("churn").aliases
    assert {k: int(v) for k, v in aliases.items()} == {"staging": registered["versions"][1]}


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


def test_a_restart_keeps_sticky_assignment(
    service: Service, registered: dict[str, Any], second_start: Tokens
) -> None:
    viewer = second_start.header(Role.VIEWER)
    with httpx.Client(base_url=service.url, timeout=60, headers=viewer) as http:
        after = sticky_variants(http, list(registered["sticky"]))
    assert after == registered["sticky"]


def test_killing_a_model_server_replica_under_load(
    service: Service, registered: dict[str, Any], second_start: Tokens
) -> None:
    """Two model server replicas; one is killed (SIGKILL) while 8 clients predict."""
    viewer = second_start.header(Role.VIEWER)
    statuses: Counter[int] = Counter()
    stop = time.monotonic() + 12

    def client(index: int) -> None:
        with httpx.Client(base_url=service.url, timeout=60, headers=viewer) as http:
            i = 0
            while time.monotonic() < stop:
                answer = http.post(
                    f"{BASE}/predict",
                    json={
                        "model": "churn",
                        "inputs": [[0.1, 0.2, 0.3, 0.4]],
                        "request_key": f"load-{index}-{i}",
                    },
                )
                statuses[answer.status_code] += 1
                i += 1

    replicas = subprocess.run(
        ["pgrep", "-f", "ServeReplica:ml:ModelServer"], capture_output=True, text=True
    ).stdout.split()
    assert len(replicas) == 2, replicas
    with ThreadPoolExecutor(8) as pool:
        for index in range(8):
            pool.submit(client, index)
        time.sleep(4)
        os.kill(int(replicas[0]), signal.SIGKILL)
    total = sum(statuses.values())
    failed = total - statuses[200]
    logging.getLogger(__name__).warning(
        "replica kill under load: %d requests, %d failed (%s)", total, failed, dict(statuses)
    )
    assert total > 100
    assert failed / total <= 0.02, dict(statuses)
