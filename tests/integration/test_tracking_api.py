"""The experiments and runs API over the real MLflow store (SQLite in a temp dir)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from mlflow.entities import ViewType

from app.adapters.idempotency_claims import SqlIdempotencyClaims as Claims
from app.adapters.mlflow_tracking import MlflowExperimentTracker
from app.core.access import Role
from app.settings import Settings
from testkit.auth import Tokens
from tests.integration.conftest import make_client, make_tracker

pytestmark = pytest.mark.integration

BASE = "/api/v1/ml"


@pytest.fixture
def engineer(tokens: Tokens) -> dict[str, str]:
    return tokens.header(Role.ENGINEER)


@pytest.fixture
def viewer(tokens: Tokens) -> dict[str, str]:
    return tokens.header(Role.VIEWER)


@pytest.fixture
def mlflow(settings: Settings) -> MlflowClient:
    """MLflow's own client on the same store: the ground truth."""
    return MlflowClient(settings.mlflow.tracking_uri)


def create_experiment(client: TestClient, headers: dict[str, str], name: str, **extra: Any) -> str:
    response = client.post(f"{BASE}/experiments", json={"name": name, **extra}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def log_run(
    client: TestClient, headers: dict[str, str], experiment_id: str, **body: Any
) -> dict[str, Any]:
    response = client.post(f"{BASE}/experiments/{experiment_id}/runs", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_experiment_lifecycle(
    client: TestClient, engineer: dict[str, str], viewer: dict[str, str], mlflow: MlflowClient
) -> None:
    response = client.post(
        f"{BASE}/experiments",
        json={"name": "churn", "description": "Churn MLP", "tags": {"team": "growth"}},
        headers=engineer,
    )
    assert response.status_code == 201
    created = response.json()
    assert response.headers["location"] == f"{BASE}/experiments/{created['id']}"
    assert created["created_by"] == "engineer-user"
    assert created["tags"] == {"team": "growth"}
    assert created["links"]["mlflow_ui"] == f"/mlflow/#/experiments/{created['id']}"

    read = client.get(f"{BASE}/experiments/{created['id']}", headers=viewer)
    assert read.status_code == 200 and read.json() == created

    stored = mlflow.get_experiment(created["id"])
    assert stored.name == "churn" and stored.tags["team"] == "growth"
    assert stored.tags["mlflow.note.content"] == "Churn MLP"


def test_duplicate_name_is_409_and_writes_nothing(
    client: TestClient, engineer: dict[str, str], mlflow: MlflowClient
) -> None:
    create_experiment(client, engineer, "dup")
    before = len(mlflow.search_experiments(view_type=ViewType.ALL))
    response = client.post(f"{BASE}/experiments", json={"name": "dup"}, headers=engineer)
    assert response.status_code == 409
    assert response.json()["code"] == "experiment_already_exists"
    assert response.headers["content-type"] == "application/problem+json"
    assert len(mlflow.search_experiments(view_type=ViewType.ALL)) == before


def test_refused_requests_write_nothing(
    client: TestClient, engineer: dict[str, str], viewer: dict[str, str], mlflow: MlflowClient
) -> None:
    experiment_id = create_experiment(client, engineer, "quiet")
    runs_url = f"{BASE}/experiments/{experiment_id}/runs"
    attempts = [
        client.post(runs_url, json={"params": {"lr": 1}}),  # no token
        client.post(runs_url, json={"params": {"lr": 1}}, headers=viewer),  # viewer
        client.post(runs_url, json={"metrics": [{"key": "a", "value": "x"}]}, headers=engineer),
        client.post(
            runs_url,
            json={"metrics": [{"key": "a", "value": 1, "timestamp": "1960-01-01T00:00:00Z"}]},
            headers=engineer,
        ),
        client.post(f"{BASE}/experiments", json={"name": ""}, headers=engineer),
        client.post(f"{BASE}/experiments", json={"name": "x"}),
    ]
    assert [a.status_code for a in attempts] == [401, 403, 422, 422, 422, 401]
    assert mlflow.search_runs([experiment_id], run_view_type=ViewType.ALL) == []
    assert [e.name for e in mlflow.search_experiments(view_type=ViewType.ALL)] == [
        "quiet",
        "Default",
    ]


def test_unknown_ids_are_404_with_stable_codes(
    client: TestClient, engineer: dict[str, str], viewer: dict[str, str]
) -> None:
    missing = client.get(f"{BASE}/experiments/424242", headers=viewer)
    assert missing.status_code == 404 and missing.json()["code"] == "experiment_not_found"
    assert missing.json()["context"] == {"experiment_id": "424242"}
    runs = client.post(f"{BASE}/experiments/424242/runs", json={}, headers=engineer)
    assert runs.status_code == 404 and runs.json()["code"] == "experiment_not_found"

    first = create_experiment(client, engineer, "first")
    second = create_experiment(client, engineer, "second")
    run = log_run(client, engineer, first)
    unknown = client.get(f"{BASE}/experiments/{first}/runs/{'0' * 32}", headers=viewer)
    assert unknown.status_code == 404 and unknown.json()["code"] == "run_not_found"
    elsewhere = client.get(f"{BASE}/experiments/{second}/runs/{run['id']}", headers=viewer)
    assert elsewhere.status_code == 404 and elsewhere.json()["code"] == "run_not_found"


def test_log_a_finished_run_with_lineage(
    client: TestClient, engineer: dict[str, str], viewer: dict[str, str], mlflow: MlflowClient
) -> None:
    experiment_id = create_experiment(client, engineer, "runs")
    t0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    run = log_run(
        client,
        engineer,
        experiment_id,
        name="mlp-1",
        start_time=t0.isoformat(),
        end_time="2026-11-01T12:05:00Z",
        params={"lr": 0.01, "hidden": 64, "optimizer": "adam", "shuffle": True},
        metrics=[
            {"key": "loss", "value": 0.9, "step": 0, "timestamp": "2026-11-01T12:01:00Z"},
            {"key": "loss", "value": 0.4, "step": 1, "timestamp": "2026-11-01T12:02:00Z"},
            {"key": "accuracy", "value": 0.88, "step": 1, "timestamp": 1793534520},
        ],
        tags={"mlflow.source.git.commit": "3f2a1bc", "team": "growth"},
        datasets=[
            {
                "name": "churn-train",
                "digest": "7c1d9a2e",
                "source": "data/churn/train.parquet",
                "schema": {"columns": ["tenure", "plan"]},
                "profile": {"rows": 1000},
                "context": "training",
            }
        ],
    )
    assert run["status"] == "FINISHED"
    assert run["params"] == {"lr": "0.01", "hidden": "64", "optimizer": "adam", "shuffle": "True"}
    assert run["metrics"]["loss"]["value"] == 0.4 and run["metrics"]["loss"]["step"] == 1
    assert run["tags"] == {"team": "growth"}
    assert run["system_tags"]["mlflow.source.git.commit"] == "3f2a1bc"
    assert run["created_by"] == "engineer-user"
    assert run["start_time"] == "2026-11-01T12:00:00Z" and run["end_time"] == "2026-11-01T12:05:00Z"
    assert run["datasets"][0]["context"] == "training"

    stored = mlflow.get_run(run["id"])
    assert stored.info.status == "FINISHED" and stored.info.run_name == "mlp-1"
    assert stored.info.start_time == int(t0.timestamp() * 1000)
    history = mlflow.get_metric_history(run["id"], "loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (0, 0.9),
        (1, 0.4),
    ]
    (dataset_input,) = stored.inputs.dataset_inputs
    assert dataset_input.dataset.digest == "7c1d9a2e"
    assert dataset_input.dataset.schema == '{"columns": ["tenure", "plan"]}'

    via_api = client.get(
        f"{BASE}/experiments/{experiment_id}/runs/{run['id']}/metrics/loss", headers=viewer
    ).json()
    assert [(p["step"], p["value"]) for p in via_api["points"]] == [(0, 0.9), (1, 0.4)]
    assert client.get(run["links"]["self"], headers=viewer).json() == run


def test_many_metrics_and_params_are_batched(
    client: TestClient, engineer: dict[str, str], mlflow: MlflowClient
) -> None:
    experiment_id = create_experiment(client, engineer, "big")
    metrics = [{"key": f"m{i % 50}", "value": i, "step": i // 50} for i in range(2500)]
    params = {f"p{i}": i for i in range(250)}
    run = log_run(client, engineer, experiment_id, metrics=metrics, params=params)
    stored = mlflow.get_run(run["id"])
    assert len(stored.data.params) == 250 and len(stored.data.metrics) == 50
    assert len(mlflow.get_metric_history(run["id"], "m7")) == 50


def test_the_logged_run_answered_is_the_run_stored(
    client: TestClient, engineer: dict[str, str], viewer: dict[str, str]
) -> None:
    """POST /runs answers the run without reading it back; whatever it logs (repeated
    keys, ties on step and timestamp, no metrics, ongoing or ended, named or not), the
    answer is what GET reads from MLflow."""
    import random

    experiment_id = create_experiment(client, engineer, "written")
    pick = random.Random(7)
    for i in range(40):
        metrics = [
            {
                "key": pick.choice(["loss", "acc", "f1"]),
                "value": pick.choice([0.5, 1.0, pick.uniform(-5, 5)]),
                "step": pick.choice([0, 1, 2]),
                "timestamp": pick.choice([1793534520000, 1793534521000]),
            }
            for _ in range(pick.choice([0, 1, 3, 12]))
        ]
        body: dict[str, Any] = {
            "metrics": metrics,
            "params": {
                f"p{j}": pick.choice([1, 0.1, "x", True]) for j in range(pick.randint(0, 4))
            },
            "tags": {"team": "growth"} if i % 2 else {},
            "status": pick.choice(["RUNNING", "FINISHED", "FAILED", "KILLED"]),
        }
        if i % 3:
            body["name"] = f"run-{i}"
        if i % 4 == 0 and body["status"] != "RUNNING":
            body["end_time"] = "2026-11-01T12:05:00Z"
            body["start_time"] = "2026-11-01T12:00:00Z"
        answered = log_run(client, engineer, experiment_id, **body)
        stored = client.get(answered["links"]["self"], headers=viewer).json()
        assert answered == stored, body


def test_an_ongoing_run_takes_data_until_it_ends(
    client: TestClient, engineer: dict[str, str], mlflow: MlflowClient
) -> None:
    experiment_id = create_experiment(client, engineer, "ongoing")
    run = log_run(client, engineer, experiment_id, status="RUNNING", metrics={"loss": 1.0})
    assert run["status"] == "RUNNING" and run["end_time"] is None
    url = f"{BASE}/experiments/{experiment_id}/runs/{run['id']}"
    more = client.patch(
        url, json={"metrics": [{"key": "loss", "value": 0.5, "step": 1}]}, headers=engineer
    )
    assert more.status_code == 200 and more.json()["metrics"]["loss"]["value"] == 0.5
    ended = client.patch(
        url, json={"status": "FINISHED", "params": {"epochs": 2}}, headers=engineer
    )
    assert ended.status_code == 200
    assert ended.json()["status"] == "FINISHED" and ended.json()["end_time"]
    late = client.patch(url, json={"metrics": {"loss": 0.1}}, headers=engineer)
    assert late.status_code == 409 and late.json()["code"] == "run_already_terminated"
    assert len(mlflow.get_metric_history(run["id"], "loss")) == 2


def test_runs_written_at_once_by_many_clients_are_each_whole(
    client: TestClient, engineer: dict[str, str], mlflow: MlflowClient
) -> None:
    """Eight clients at once, each logging a run and then ending another, on one SQLite
    store whose writers the adapter queues: every run is stored whole, none mixed up."""
    experiment_id = create_experiment(client, engineer, "at-once")
    open_runs = [log_run(client, engineer, experiment_id, status="RUNNING") for _ in range(8)]

    def write(i: int) -> tuple[Any, Any]:
        logged = client.post(
            f"{BASE}/experiments/{experiment_id}/runs",
            json={
                "name": f"r{i}",
                "params": {"i": str(i)},
                "metrics": {f"m{k}": i + k / 100 for k in range(20)},
            },
            headers=engineer,
        )
        ended = client.patch(
            f"{BASE}/experiments/{experiment_id}/runs/{open_runs[i]['id']}",
            json={"status": "FINISHED", "metrics": {"final": float(i)}},
            headers=engineer,
        )
        return logged, ended

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(write, range(8)))
    assert [(a.status_code, b.status_code) for a, b in answers] == [(201, 200)] * 8
    for i, (logged, ended) in enumerate(answers):
        stored = mlflow.get_run(logged.json()["id"])
        assert stored.info.run_name == f"r{i}" and stored.data.params == {"i": str(i)}
        assert stored.data.metrics == {f"m{k}": i + k / 100 for k in range(20)}
        assert stored.info.status == "FINISHED"
        assert mlflow.get_run(open_runs[i]["id"]).data.metrics == {"final": float(i)}
        assert ended.json()["status"] == "FINISHED"


def test_search_filter_order_and_pagination(
    client: TestClient, engineer: dict[str, str], viewer: dict[str, str]
) -> None:
    experiment_id = create_experiment(client, engineer, "search")
    for i in range(7):
        log_run(
            client,
            engineer,
            experiment_id,
            name=f"r{i}",
            params={"lr": str(0.1 * (i % 2 + 1))},
            metrics={"accuracy": 0.8 + i / 100},
        )
    url = f"{BASE}/experiments/{experiment_id}/runs"
    query = {
        "filter": "metrics.accuracy > 0.825",
        "order_by": "metrics.accuracy DESC",
        "page_size": 2,
    }
    names: list[str] = []
    token = None
    pages = 0
    while True:
        response = client.get(
            url, params={**query, **({"page_token": token} if token else {})}, headers=viewer
        )
        assert response.status_code == 200, response.text
        page = response.json()
        names += [r["name"] for r in page["items"]]
        pages += 1
        token = page["next_page_token"]
        if token is None:
            break
    assert names == ["r6", "r5", "r4", "r3"] and pages in (2, 3)

    first = client.get(url, params=query, headers=viewer).json()
    reused = client.get(url, params={"page_token": first["next_page_token"]}, headers=viewer)
    assert reused.status_code == 422 and reused.json()["code"] == "invalid_page_token"

    by_param = client.get(url, params={"filter": "params.lr = '0.2'"}, headers=viewer).json()
    assert sorted(r["name"] for r in by_param["items"]) == ["r1", "r3", "r5"]

    bad_filter = client.get(url, params={"filter": "metrics.accuracy >> 1"}, headers=viewer)
    assert bad_filter.status_code == 422 and bad_filter.json()["code"] == "invalid_filter"
    assert bad_filter.json()["errors"][0]["field"] == "filter"
    bad_order = client.get(url, params={"order_by": "metrics.accuracy SIDEWAYS"}, headers=viewer)
    assert bad_order.status_code == 422 and bad_order.json()["errors"][0]["field"] == "order_by"


def test_experiment_listing_filters_by_name_and_paginates(
    client: TestClient, engineer: dict[str, str], viewer: dict[str, str]
) -> None:
    for name in ["churn_v1", "churnXv2", "fraud", "it's-churn", "100%-churn"]:
        create_experiment(client, engineer, name)

    def names(**params: Any) -> list[str]:
        response = client.get(f"{BASE}/experiments", params=params, headers=viewer)
        assert response.status_code == 200, response.text
        return [e["name"] for e in response.json()["items"]]

    assert names(name="churn_") == ["churn_v1"]  # _ is not a wildcard
    assert names(name="'s-ch") == ["it's-churn"]
    assert names(name="0%") == ["100%-churn"]
    assert sorted(names(name="CHURN")) == sorted(
        ["churn_v1", "churnXv2", "it's-churn", "100%-churn"]
    )

    seen, token = [], None
    while True:
        params: dict[str, Any] = {"page_size": 2, **({"page_token": token} if token else {})}
        page = client.get(f"{BASE}/experiments", params=params, headers=viewer).json()
        seen += [e["name"] for e in page["items"]]
        token = page["next_page_token"]
        if not token:
            break
    assert len(seen) == len(set(seen)) == 6  # five + MLflow's Default
    assert seen[0] == "100%-churn"  # newest first


def test_compare_runs(client: TestClient, engineer: dict[str, str], viewer: dict[str, str]) -> None:
    experiment_id = create_experiment(client, engineer, "compare")
    a = log_run(
        client,
        engineer,
        experiment_id,
        params={"lr": 0.1, "depth": 3},
        metrics={"accuracy": 0.90, "val_loss": 0.30},
    )
    b = log_run(
        client,
        engineer,
        experiment_id,
        params={"lr": 0.2, "depth": 3},
        metrics={"accuracy": 0.93, "val_loss": 0.35},
    )
    response = client.get(
        f"{BASE}/experiments/{experiment_id}/runs/compare",
        params={"run_ids": f"{a['id']},{b['id']}"},
        headers=viewer,
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["run_ids"] == [a["id"], b["id"]]
    params = {row["key"]: row for row in result["params"]}
    assert params["lr"]["differs"] and not params["depth"]["differs"]
    metrics = {row["key"]: row for row in result["metrics"]}
    assert metrics["accuracy"]["best_run_ids"] == [b["id"]]
    assert metrics["val_loss"]["goal"] == "minimize"
    assert metrics["val_loss"]["best_run_ids"] == [a["id"]]
    overridden = client.get(
        f"{BASE}/experiments/{experiment_id}/runs/compare",
        params=[("run_ids", a["id"]), ("run_ids", b["id"]), ("maximize", "val_loss")],
        headers=viewer,
    ).json()
    assert {r["key"]: r for r in overridden["metrics"]}["val_loss"]["best_run_ids"] == [b["id"]]
    missing = client.get(
        f"{BASE}/experiments/{experiment_id}/runs/compare",
        params={"run_ids": f"{a['id']},{'f' * 32}"},
        headers=viewer,
    )
    assert missing.status_code == 404 and missing.json()["code"] == "run_not_found"


def test_idempotent_retries(
    client: TestClient, engineer: dict[str, str], mlflow: MlflowClient
) -> None:
    key = {"Idempotency-Key": "retry-1"}
    first = client.post(f"{BASE}/experiments", json={"name": "idem"}, headers={**engineer, **key})
    again = client.post(f"{BASE}/experiments", json={"name": "idem"}, headers={**engineer, **key})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["idempotency-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = client.post(f"{BASE}/experiments", json={"name": "other"}, headers={**engineer, **key})
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"

    experiment_id = first.json()["id"]
    url = f"{BASE}/experiments/{experiment_id}/runs"
    body = {"name": "once", "metrics": {"accuracy": 0.9}}
    runs = [client.post(url, json=body, headers={**engineer, **key}) for _ in range(3)]
    assert [r.status_code for r in runs] == [201, 200, 200]
    assert len({r.json()["id"] for r in runs}) == 1
    changed = client.post(url, json={**body, "name": "twice"}, headers={**engineer, **key})
    assert changed.status_code == 409
    assert len(mlflow.search_runs([experiment_id])) == 1


def test_twenty_concurrent_retries_on_two_replicas_have_exactly_one_effect(
    settings: Settings, engineer: dict[str, str], mlflow: MlflowClient
) -> None:
    """Two replicas (each its own adapter and locks) on one MLflow store and one service
    database; 20 retries of one request with one Idempotency-Key, at once: one experiment,
    one run, the same answer."""
    mlflow_uri, artifacts = settings.mlflow.tracking_uri, settings.mlflow.artifact_root
    claims = f"sqlite:///{settings.data_dir / 'service.db'}"  # the database replicas share
    replicas = [
        make_client(settings, MlflowExperimentTracker(mlflow_uri, artifacts, Claims(claims)))
        for _ in range(2)
    ]
    key = {**engineer, "Idempotency-Key": "burst-1"}

    def twenty(path: str, body: dict[str, Any]) -> list[Any]:
        with ThreadPoolExecutor(20) as pool:
            calls = [
                pool.submit(replicas[i % 2].post, path, json=body, headers=key) for i in range(20)
            ]
            return [call.result() for call in calls]

    experiments = twenty(f"{BASE}/experiments", {"name": "burst"})
    assert sorted(r.status_code for r in experiments) == [200] * 19 + [201]
    assert len({r.json()["id"] for r in experiments}) == 1
    experiment_id = experiments[0].json()["id"]
    runs = twenty(f"{BASE}/experiments/{experiment_id}/runs", {"name": "once"})
    assert sorted(r.status_code for r in runs) == [200] * 19 + [201], [r.text for r in runs]
    assert len({r.json()["id"] for r in runs}) == 1
    assert [e.name for e in mlflow.search_experiments()].count("burst") == 1
    assert len(mlflow.search_runs([experiment_id], run_view_type=ViewType.ALL)) == 1


class FailingDatasets(MlflowExperimentTracker):
    """The real adapter, failing at the last step of a run write that has datasets."""

    def _log_datasets(self, run_id: str, datasets: Any) -> None:
        if datasets:
            raise RuntimeError("disk full")


def test_a_run_that_cannot_be_fully_written_is_removed(
    settings: Settings, engineer: dict[str, str], mlflow: MlflowClient
) -> None:
    client = make_client(
        settings, make_tracker(settings, FailingDatasets), raise_server_exceptions=False
    )
    experiment_id = create_experiment(client, engineer, "atomic")
    response = client.post(
        f"{BASE}/experiments/{experiment_id}/runs",
        json={
            "params": {"lr": 0.1},
            "metrics": {"accuracy": 0.9},
            "datasets": [{"name": "d", "digest": "1", "source": "s"}],
        },
        headers=engineer,
    )
    assert response.status_code == 500
    assert "disk full" not in response.text
    assert mlflow.search_runs([experiment_id], run_view_type=ViewType.ALL) == []
    # the failed write let go of the adapter's queue of writers: the next one goes through
    written = log_run(client, engineer, experiment_id, metrics={"accuracy": 0.9})
    assert mlflow.get_run(written["id"]).data.metrics == {"accuracy": 0.9}


def test_health_reports_the_real_stores(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    report = client.get(f"{BASE}/health").json()
    assert report["ready"]
    assert {c["name"]: c["status"] for c in report["components"]} == {
        "mlflow_store": "ok",
        "artifact_store": "ok",
    }
    not_a_dir = tmp_path / "not-a-directory"
    not_a_dir.write_text("")
    broken = settings.model_copy(
        update={
            "mlflow": settings.mlflow.model_copy(
                update={
                    "tracking_uri": f"sqlite:///{not_a_dir}/mlflow.db",
                    "artifact_root": str(not_a_dir / "artifacts"),
                }
            )
        }
    )
    down = make_client(broken, make_tracker(broken)).get(f"{BASE}/health")
    assert down.status_code == 503
    assert {c["name"]: c["status"] for c in down.json()["components"]} == {
        "mlflow_store": "down",
        "artifact_store": "down",
    }
