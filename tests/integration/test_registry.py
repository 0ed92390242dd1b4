"""The model registry on a real Ray actor, real MLflow registry and real SQLite database."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx
import pytest
import ray
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from app.adapters.health_probes import PingProbe
from app.adapters.mlflow_tracking import MlflowExperimentTracker
from app.adapters.registry_actor_client import ActorModelRegistry
from app.core.access import Role
from app.core.semver import SemVer
from app.services.container import Services
from app.services.lifecycle import Promotions
from app.settings import Settings
from deployments.builder import registry_actor
from testkit.api import api_for
from testkit.auth import Tokens
from testkit.models import LoggedRun, log_hanging_run, log_model_run
from tests.integration.actor_restarts import kill_and_wait_restarted

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE = "/api/v1/ml"
WAIVE_SERVING = {"waived_gates": ["integration_checks", "ab_test"]}


@pytest.fixture
def registry_settings(settings: Settings) -> Settings:
    unique = settings.registry.model_copy(update={"actor_name": f"reg-{uuid.uuid4().hex[:8]}"})
    return settings.model_copy(update={"registry": unique})


@pytest.fixture
def handle(registry_settings: Settings, ray_cluster: None) -> Iterator[Any]:
    actor = registry_actor(registry_settings)
    yield actor
    ray.kill(actor, no_restart=True)


@pytest.fixture
def app(registry_settings: Settings, handle: Any) -> Any:
    return app_for(registry_settings, handle)


def app_for(settings: Settings, handle: Any) -> Any:
    mlflow = settings.mlflow
    tracker = MlflowExperimentTracker(mlflow.tracking_uri, mlflow.artifact_root)
    registry = ActorModelRegistry(handle)
    services = Services(
        tracker=tracker,
        probes=(PingProbe("registry", registry.ping),),
        registry=registry,
        promotions=Promotions(registry, None),
    )
    return api_for(settings, services)


@pytest.fixture
def registry_with(
    registry_settings: Settings, ray_cluster: None
) -> Iterator[Callable[..., tuple[Settings, TestClient]]]:
    """Makes a registry actor with some registry settings changed, and its test client."""
    actors = []

    def make(**changes: Any) -> tuple[Settings, TestClient]:
        registry = registry_settings.registry.model_copy(update=changes)
        settings = registry_settings.model_copy(update={"registry": registry})
        actors.append(registry_actor(settings))
        return settings, TestClient(app_for(settings, actors[-1]))

    yield make
    for actor in actors:
        ray.kill(actor, no_restart=True)


@pytest.fixture
def client(app: Any) -> TestClient:
    return TestClient(app)


@pytest.fixture
def mlflow_client(registry_settings: Settings) -> MlflowClient:
    return MlflowClient(registry_settings.mlflow.tracking_uri)


def run(settings: Settings, **kwargs: Any) -> LoggedRun:
    return log_model_run(
        settings.mlflow.tracking_uri, settings.mlflow.artifact_root, "churn-training", **kwargs
    )


def register(client: TestClient, tokens: Tokens, run_id: str, **extra: Any) -> dict[str, Any]:
    response = client.post(
        f"{BASE}/models",
        json={"name": "churn", "run_id": run_id, **extra},
        headers=tokens.header(Role.ENGINEER),
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def promote(client: TestClient, tokens: Tokens, version: int, to: str) -> httpx.Response:
    return client.post(
        f"{BASE}/models/churn/promote",
        json={"version": version, "to": to},
        headers=tokens.header(Role.ENGINEER),
    )


def audit(client: TestClient, tokens: Tokens, **params: Any) -> dict[str, Any]:
    response = client.get(
        f"{BASE}/models/churn/audit", params=params, headers=tokens.header(Role.VIEWER)
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def when_back(client: TestClient, path: str, tokens: Tokens) -> dict[str, Any]:
    """GET ``path`` until the registry answers, allowing 503s while Ray restarts it."""
    for _ in range(240):
        response = client.get(path, headers=tokens.header(Role.VIEWER))
        if response.status_code == 200:
            return dict(response.json())
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "backend_unavailable"
        asyncio.run(asyncio.sleep(0.5))
    raise AssertionError(f"{path} still unavailable after 120 s")


def set_policy(client: TestClient, tokens: Tokens, policy: dict[str, Any]) -> None:
    response = client.put(
        f"{BASE}/models/churn/policy", json=policy, headers=tokens.header(Role.APPROVER)
    )
    assert response.status_code == 200, response.text


def test_semantic_versions_and_lineage(
    client: TestClient, tokens: Tokens, registry_settings: Settings
) -> None:
    first = run(registry_settings, seed=1)
    second = run(registry_settings, seed=2)
    third = run(registry_settings, seed=3, inputs=5)  # a different input signature
    versions = [register(client, tokens, r.run_id) for r in (first, second, third)]
    assert [v["semver"] for v in versions] == ["1.0.0", "1.1.0", "2.0.0"]
    assert [v["stage"] for v in versions] == ["development"] * 3
    lineage = versions[1]["lineage"]
    assert lineage["run_id"] == second.run_id and lineage["experiment_id"] == second.experiment_id
    assert lineage["parent_version"] == versions[0]["version"]
    assert lineage["code_version"] == "commit-2"
    assert len(lineage["artifact_digest"]) == 64
    (dataset,) = lineage["datasets"]
    assert dataset["name"] == "churn-train" and dataset["context"] == "training"
    assert dataset["source"] and dataset["digest"] and dataset["schema"]

    again = client.post(
        f"{BASE}/models",
        json={"name": "churn", "run_id": third.run_id},
        headers=tokens.header(Role.ENGINEER),
    )
    assert again.status_code == 409 and again.json()["code"] == "duplicate_version"
    patched = register(client, tokens, third.run_id, description="same weights, better notes")
    assert patched["semver"] == "2.0.1"
    assert patched["lineage"]["artifact_digest"] == versions[2]["lineage"]["artifact_digest"]

    history = client.get(f"{BASE}/models/churn/versions", headers=tokens.header(Role.VIEWER))
    items = history.json()["items"]
    assert [i["semver"] for i in items] == ["1.0.0", "1.1.0", "2.0.0", "2.0.1"]
    assert items[0]["events"][0]["type"] == "version_registered"
    assert items[0]["events"][0]["actor"] == "engineer-user"
    model = client.get(f"{BASE}/models", headers=tokens.header(Role.VIEWER)).json()["items"][0]
    assert model["stages"]["development"] == [4, 3, 2, 1]
    assert model["latest_semver"] == "2.0.1"


def test_unknown_sources_and_models(
    client: TestClient, tokens: Tokens, registry_settings: Settings
) -> None:
    missing_run = client.post(
        f"{BASE}/models",
        json={"name": "churn", "run_id": "f" * 32},
        headers=tokens.header(Role.ENGINEER),
    )
    assert missing_run.status_code == 422
    assert missing_run.json()["code"] == "model_source_not_found"
    assert missing_run.json()["errors"][0]["field"] == "run_id"
    assert (
        client.get(f"{BASE}/models/nope", headers=tokens.header(Role.VIEWER)).json()["code"]
        == "model_not_found"
    )


def test_a_failed_gate_changes_nothing_but_the_audit(
    client: TestClient, tokens: Tokens, registry_settings: Settings, mlflow_client: MlflowClient
) -> None:
    version = register(client, tokens, run(registry_settings, accuracy=0.80).run_id)
    set_policy(client, tokens, {"metric_rules": [{"metric": "accuracy", "min": 0.85}]})
    before = audit(client, tokens)["events"]
    refused = promote(client, tokens, version["version"], "staging")
    assert refused.status_code == 409
    problem = refused.json()
    assert problem["code"] == "gates_failed"
    checks = {c["gate"]: c for c in problem["context"]["checks"]}
    assert checks["validation"]["passed"], checks["validation"]
    metrics = checks["metrics_baseline"]
    assert not metrics["passed"] and "below the minimum 0.85" in metrics["reason"]
    assert metrics["inputs"]["rules"][0]["value"] == 0.80

    after = audit(client, tokens)
    assert [e["type"] for e in after["events"]] == [e["type"] for e in before] + [
        "promotion_refused"
    ]
    assert after["verification"]["valid"]
    current = client.get(
        f"{BASE}/models/churn/versions/{version['version']}", headers=tokens.header(Role.VIEWER)
    ).json()
    assert current["stage"] == "development"
    assert not current["gate_results"][1]["passed"]
    assert mlflow_client.get_registered_model("churn").aliases == {}


def test_validation_catches_a_model_without_an_input_example(
    client: TestClient, tokens: Tokens, registry_settings: Settings
) -> None:
    version = register(client, tokens, run(registry_settings, with_example=False).run_id)
    refused = promote(client, tokens, version["version"], "staging")
    assert refused.status_code == 409
    validation = next(c for c in refused.json()["context"]["checks"] if c["gate"] == "validation")
    assert not validation["passed"] and "has_input_example" in validation["reason"]


def test_a_validation_that_gets_no_cpu_is_a_503_and_holds_up_no_other_change(
    registry_with: Callable[..., tuple[Settings, TestClient]], tokens: Tokens
) -> None:
    # the validation task wants more CPUs than the cluster has
    settings, client = registry_with(validation_num_cpus=64.0, validation_timeout_s=5.0)
    first = register(client, tokens, run(settings, seed=1).run_id)["version"]
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(promote, client, tokens, first, "staging")
        # meanwhile the registry takes other changes: its lock is not held by the task
        second = register(client, tokens, run(settings, seed=2).run_id)["version"]
        assert not waiting.done()
        refused = waiting.result(timeout=120)
    assert refused.status_code == 503, refused.text
    problem = refused.json()
    assert problem["code"] == "backend_unavailable"
    assert "no free CPU (64 wanted" in problem["detail"] and "within 5 s" in problem["detail"]
    assert problem["context"] == {"wanted_cpus": 64.0, "waited_s": 5.0}
    versions = client.get(f"{BASE}/models/churn", headers=tokens.header(Role.VIEWER)).json()
    assert [v["stage"] for v in versions["versions"]] == ["development", "development"]
    kinds = [e["type"] for e in audit(client, tokens)["events"]]
    assert "promotion_refused" not in kinds  # not the version's failure: nothing recorded
    assert second == first + 1


def test_a_model_whose_load_never_returns_fails_validation_in_time(
    registry_with: Callable[..., tuple[Settings, TestClient]], tokens: Tokens
) -> None:
    settings, client = registry_with(validation_timeout_s=8.0)
    mlflow = settings.mlflow
    hanging = log_hanging_run(mlflow.tracking_uri, mlflow.artifact_root, "churn-training")
    version = register(client, tokens, hanging.run_id)["version"]
    refused = promote(client, tokens, version, "staging")
    assert refused.status_code == 409, refused.text
    checks = refused.json()["context"]["checks"]
    validation = next(c for c in checks if c["gate"] == "validation")
    assert not validation["passed"]
    assert "did not complete within 8 s" in validation["reason"], validation


def test_concurrent_promotions_have_exactly_one_winner(
    app: Any, client: TestClient, tokens: Tokens, registry_settings: Settings
) -> None:
    version = register(client, tokens, run(registry_settings).run_id)["version"]

    async def race() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", timeout=300
        ) as http:
            return await asyncio.gather(
                *(
                    http.post(
                        f"{BASE}/models/churn/promote",
                        json={"version": version, "to": "staging"},
                        headers=tokens.header(Role.ENGINEER),
                    )
                    for _ in range(20)
                )
            )

    responses = asyncio.run(race())
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 19
    losers = {r.json()["code"] for r in responses if r.status_code == 409}
    assert losers == {"illegal_transition"}
    log = audit(client, tokens)
    assert log["verification"]["valid"]
    assert [e["type"] for e in log["events"]].count("stage_changed") == 1


def test_approvals_need_an_approver_and_bind_to_the_digest(
    client: TestClient, tokens: Tokens, registry_settings: Settings
) -> None:
    version = register(client, tokens, run(registry_settings).run_id)
    url = f"{BASE}/models/churn/approvals"
    body = {"version": version["version"], "comment": "looks good"}
    assert client.post(url, json=body, headers=tokens.header(Role.ENGINEER)).status_code == 403
    approved = client.post(url, json=body, headers=tokens.header(Role.APPROVER))
    assert approved.status_code == 201
    assert approved.json()["digest"] == version["lineage"]["artifact_digest"]
    assert approved.json()["approver"] == "approver-user"
    replay = client.post(url, json=body, headers=tokens.header(Role.APPROVER))
    assert replay.status_code == 200 and replay.headers["idempotency-replayed"] == "true"
    events = audit(client, tokens)["events"]
    assert [e["type"] for e in events].count("approval_recorded") == 1
    recorded = next(e for e in events if e["type"] == "approval_recorded")
    assert recorded["payload"]["digest"] == version["lineage"]["artifact_digest"]


def walk_to_production(client: TestClient, tokens: Tokens, version: int) -> None:
    assert promote(client, tokens, version, "staging").status_code == 200
    approval = client.post(
        f"{BASE}/models/churn/approvals",
        json={"version": version},
        headers=tokens.header(Role.APPROVER),
    )
    assert approval.status_code == 201
    promoted = promote(client, tokens, version, "production")
    assert promoted.status_code == 200, promoted.text


def test_production_is_blocked_without_serving_evidence_unless_waived(
    client: TestClient, tokens: Tokens, registry_settings: Settings
) -> None:
    version = register(client, tokens, run(registry_settings).run_id)["version"]
    assert promote(client, tokens, version, "staging").status_code == 200
    blocked = promote(client, tokens, version, "production")
    assert blocked.status_code == 409
    checks = {c["gate"]: c for c in blocked.json()["context"]["checks"]}
    assert "no evidence" in checks["integration_checks"]["reason"]
    assert checks["ab_test"]["passed"] and "not applicable" in checks["ab_test"]["reason"]
    assert not checks["manual_approval"]["passed"]

    set_policy(client, tokens, WAIVE_SERVING)
    client.post(
        f"{BASE}/models/churn/approvals",
        json={"version": version},
        headers=tokens.header(Role.APPROVER),
    )
    promoted = promote(client, tokens, version, "production")
    assert promoted.status_code == 200, promoted.text
    checks = {c["gate"]: c for c in promoted.json()["checks"]}
    assert checks["integration_checks"]["waived"] and not checks["integration_checks"]["passed"]
    assert checks["ab_test"]["passed"] and not checks["ab_test"]["waived"]
    assert checks["manual_approval"]["passed"] and not checks["manual_approval"]["waived"]
    stored = audit(client, tokens)["events"][-1]
    assert stored["type"] == "stage_changed" and stored["payload"]["to"] == "production"
    assert {c["gate"] for c in stored["payload"]["checks"] if c["waived"]} == {"integration_checks"}
    assert stored["payload"]["policy"]["waived_gates"] == ["ab_test", "integration_checks"]


def test_history_as_of_and_superseding(
    client: TestClient, tokens: Tokens, registry_settings: Settings, mlflow_client: MlflowClient
) -> None:
    v1 = register(client, tokens, run(registry_settings, seed=1).run_id)["version"]
    set_policy(client, tokens, {**WAIVE_SERVING, "default_max_regression": None})
    walk_to_production(client, tokens, v1)
    moments = [datetime.now().astimezone()]
    v2 = register(client, tokens, run(registry_settings, seed=2).run_id)["version"]
    walk_to_production(client, tokens, v2)
    moments.append(datetime.now().astimezone())

    model = client.get(f"{BASE}/models/churn", headers=tokens.header(Role.VIEWER)).json()
    assert model["stages"]["production"] == [v2] and model["stages"]["archived"] == [v1]
    assert mlflow_client.get_registered_model("churn").aliases == {"production": v2}
    last = audit(client, tokens)["events"][-1]
    assert last["version"] == v1 and last["payload"]["to"] == "archived"
    assert "superseded" in last["payload"]["reason"]

    first_event = audit(client, tokens)["events"][0]["at"]
    before_all = audit(client, tokens, as_of="2000-01-01T00:00:00Z")
    assert before_all["stages_as_of"]["production"] == []
    at_first = audit(client, tokens, as_of=moments[0].isoformat())
    assert at_first["stages_as_of"]["production"] == [v1]
    assert at_first["stages_as_of"]["archived"] == []
    at_second = audit(client, tokens, as_of=moments[1].isoformat())
    assert at_second["stages_as_of"]["production"] == [v2]
    assert at_second["stages_as_of"]["archived"] == [v1]
    assert first_event <= at_first["as_of"]


def test_killing_the_actor_loses_nothing(
    client: TestClient,
    tokens: Tokens,
    registry_settings: Settings,
    handle: Any,
    mlflow_client: MlflowClient,
) -> None:
    v1 = register(client, tokens, run(registry_settings, seed=1).run_id)["version"]
    set_policy(client, tokens, WAIVE_SERVING)
    walk_to_production(client, tokens, v1)
    v2 = register(client, tokens, run(registry_settings, seed=2).run_id)["version"]
    assert promote(client, tokens, v2, "staging").status_code == 200
    before = client.get(f"{BASE}/models/churn", headers=tokens.header(Role.VIEWER)).json()
    log_before = audit(client, tokens)

    kill_and_wait_restarted(handle)  # Ray restarts it; it reloads from the database
    after = when_back(client, f"{BASE}/models/churn", tokens)
    assert after["stages"] == before["stages"]
    audit_after = when_back(client, f"{BASE}/models/churn/audit", tokens)
    assert audit_after["events"] == log_before["events"]
    assert audit_after["verification"]["valid"]
    assert mlflow_client.get_registered_model("churn").aliases == {
        "production": v1,
        "staging": v2,
    }
    assert ray.get(handle.aliases.remote("churn")) == {"production": v1, "staging": v2}


def test_tampering_with_one_audit_row_breaks_verification_there(
    client: TestClient, tokens: Tokens, registry_settings: Settings
) -> None:
    register(client, tokens, run(registry_settings, seed=1).run_id)
    register(client, tokens, run(registry_settings, seed=2).run_id)
    assert audit(client, tokens)["verification"] == {
        "valid": True,
        "events_checked": 3,
        "broken_at": None,
        "reason": "",
    }
    database = registry_settings.state.database_url
    assert database and database.startswith("sqlite:///")
    with sqlite3.connect(database.removeprefix("sqlite:///")) as connection:
        connection.execute(
            "UPDATE registry_audit SET actor = 'mallory' WHERE model = 'churn' AND seq = 2"
        )
    verification = audit(client, tokens)["verification"]
    assert verification["valid"] is False and verification["broken_at"] == 2
    assert verification["events_checked"] == 1


def test_the_builder_reuses_the_actor_and_replaces_it_when_settings_change(
    client: TestClient, tokens: Tokens, registry_settings: Settings, handle: Any
) -> None:
    register(client, tokens, run(registry_settings).run_id)
    same = registry_actor(registry_settings)
    assert same._actor_id == handle._actor_id  # a redeploy keeps the running actor
    changed_registry = registry_settings.registry.model_copy(update={"validation_timeout_s": 123.0})
    changed = registry_settings.model_copy(update={"registry": changed_registry})
    replacement = registry_actor(changed)
    try:
        assert replacement._actor_id != handle._actor_id
        view = ray.get(replacement.get_model.remote("churn"))
        assert [v.semver for v in view.versions] == [SemVer(1, 0, 0)]
    finally:
        ray.kill(replacement, no_restart=True)
