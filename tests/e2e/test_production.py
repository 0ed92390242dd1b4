"""The engineer's day on the production profile: `scripts/stack up`, then the service as
`ML_ENV=prod scripts/serve` starts it, on PostgreSQL, an S3-compatible server (s3rver)
and Redis (a private stack of this test, see testkit/stack.py).

Along the day: experiments and runs, a training job, a notebook's models logged through
`/mlflow` with only the URL and a token, registration, promotion, deployment, predictions,
an A/B test with label feedback, features served from Redis, a drift evaluation over the
prediction log read back from S3. Then the bucket is listed (each kind of object where it
belongs) and the data directory checked (nothing there but caches). Then the service is
restarted, and each store stopped and started in turn: its endpoints answer 503 with the
store's code within the timeout, the others keep answering, loaded versions keep
predicting, and everything recovers without a restart.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import yaml

from app.core.access import Role
from app.core.drift import REFERENCE_ARTIFACT
from app.samples import churn
from testkit.auth import RoleClient, Tokens
from testkit.models import log_model_run
from testkit.service import ROOT, Service
from testkit.stack import Stack, day_settings, local_stack
from testkit.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BASE = "/api/v1/ml"
FEATURES = list(churn.FEATURES)
OUTAGE_ANSWER_S = 30  # an endpoint of a stopped store answers 503 within this
# What the service on this machine may keep under its data directory (node-local caches
# and locks); everything else belongs in the stores.
LOCAL_ONLY = ("cache/", ".prepare.lock")


class Day(RoleClient):
    """The service on the stack, and an HTTP client per role."""

    def __init__(self, service: Service, stack: Stack, tokens: Tokens, env: dict[str, str]) -> None:
        super().__init__(service.url + BASE, tokens)
        self.service, self.stack, self.env = service, stack, env

    def health_report(self) -> list[dict[str, object]]:
        """`/health`'s components, each with its status and detail."""
        report = httpx.get(f"{self.service.url}{BASE}/health", timeout=60).json()
        return list(report["components"])

    def health(self) -> dict[str, str]:
        return {str(c["name"]): str(c["status"]) for c in self.health_report()}

    def bucket(self) -> list[str]:
        s3 = self.stack.s3()
        keys: list[str] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="ml-artifacts"):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day]:
    tokens = Tokens()
    with local_stack() as stack:
        service = Service(tmp_path_factory.mktemp("production"))
        stores = {
            key: value
            for key, value in stack.settings().items()
            if key not in {"ML_DATA_DIR", "ML_AUTH__BOOTSTRAP_ADMIN_TOKEN", "ML_STACK_DIR"}
        }
        env = {
            **stores,
            "ML_ENV": "prod",
            **day_settings(tokens.entries()),
        }
        service.start(env, timeout_s=600)
        try:
            yield Day(service, stack, tokens, env)
        finally:
            service.stop()


def churn_rows(seed: int, count: int) -> tuple[list[dict[str, float]], list[int]]:
    frame = churn.generate(count, seed)
    return frame[FEATURES].to_dict(orient="records"), [int(y) for y in frame[churn.TARGET]]


def test_the_day_on_postgresql_s3_and_redis(day: Day) -> None:
    assert set(day.health().values()) == {"ok"}, day.health()
    assert "feature_online_store" in day.health()

    # experiments and runs (MLflow on PostgreSQL)
    experiment = day.ok("POST", "/experiments", json={"name": "churn-prod"})
    run = day.ok(
        "POST",
        f"/experiments/{experiment['id']}/runs",
        json={"name": "baseline", "params": {"lr": "0.01"}, "metrics": {"accuracy": 0.81}},
    )
    runs = day.ok("GET", f"/experiments/{experiment['id']}/runs", Role.VIEWER)["items"]
    assert [r["id"] for r in runs] == [run["id"]]

    # a training job: its dataset, checkpoints and model in S3, registered as churn v1
    spec = yaml.safe_load((ROOT / "configs" / "training" / "churn_baseline.yaml").read_text())
    job = day.ok("POST", "/training/submit", json=spec)
    state = wait_for(
        lambda: (
            s
            if (s := day.ok("GET", f"/training/{job['job_id']}", Role.VIEWER))["state"]
            in ("succeeded", "failed", "stopped")
            else None
        ),
        "the training job did not end",
        timeout_s=900,
    )
    assert state["state"] == "succeeded", state
    trained = int(state["registered"]["version"])
    day.ok("POST", "/models/churn/promote", json={"version": trained, "to": "staging"})
    day.ok("POST", "/models/churn/deploy", json={"strategy": "replace", "version": trained})

    # predictions of the trained version, logged to S3, and a drift evaluation over them
    rows, _ = churn_rows(seed=5, count=300)
    for start in range(0, 300, 50):
        answer = day.call(
            "POST",
            "/predict",
            Role.VIEWER,
            json={"model": "churn", "inputs": rows[start : start + 50]},
        )
        assert answer.status_code == 200, answer.text
    wait_for(
        lambda: any(k.startswith("data/predictions/model=churn/") for k in day.bucket()),
        "no prediction log in the bucket",
    )
    evaluations = wait_for(
        lambda: [
            e
            for e in day.ok("POST", "/models/churn/monitoring/evaluate")
            if e["window"]["rows"] >= 300 and e["reference"]
        ],
        "no drift evaluation over the logged predictions",
    )
    assert evaluations[0]["version"] == trained, evaluations

    # a notebook's two models, logged through /mlflow with only the URL and a token
    os.environ["MLFLOW_TRACKING_TOKEN"] = day.tokens.by_role[Role.ENGINEER]
    try:
        logged = [
            log_model_run(f"{day.service.url}/mlflow", "unused", "notebook", seed=seed)
            for seed in (1, 2)
        ]
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    versions = []
    for run_logged in logged:
        version = day.ok("POST", "/models", json={"name": "ab", "run_id": run_logged.run_id})
        assert version["lineage"]["run_id"] == run_logged.run_id
        day.ok("POST", "/models/ab/promote", json={"version": version["version"], "to": "staging"})
        versions.append(version["version"])

    # an A/B test with label feedback (traffic and feedback in PostgreSQL)
    day.ok(
        "POST",
        "/models/ab/deploy",
        json={"strategy": "ab", "variants": [{"version": v, "weight": 50} for v in versions]},
    )
    items = []
    for i in range(60):
        body = {"model": "ab", "inputs": [[0.1 * (i % 7), 0.2, 0.3, 0.4]], "request_key": f"c-{i}"}
        answer = day.call("POST", "/predict", Role.VIEWER, json=body)
        assert answer.status_code == 200, answer.text
        items.append({"request_id": answer.json()["request_id"], "label": i % 2})
    wait_for(
        lambda: (
            sum(
                v["requests"]
                for v in day.ok("GET", "/models/ab/deployment", Role.VIEWER)["variants"]
            )
            >= 60
        ),
        "the A/B requests were not counted",
    )
    feedback = day.ok("POST", "/feedback", json={"items": items})
    assert {r["status"] for r in feedback["results"]} == {"recorded"}, feedback
    variants = day.ok("GET", "/models/ab/deployment", Role.VIEWER)["variants"]
    assert all(v["quality"] is not None for v in variants), variants

    # features: the offline data in S3, materialized into Redis, served from it
    catalog = day.ok("GET", "/features", Role.VIEWER)
    assert {v["name"] for v in catalog["feature_views"]} >= {"customer_stats"}
    done = day.ok("POST", "/features/materialize")
    assert done["freshness"] == {"customer_stats": "fresh"}
    assert int(day.stack.redis_cli("dbsize")) > 0
    served = day.ok(
        "POST",
        "/features/serve",
        Role.VIEWER,
        json={"feature_service": "churn_v1", "entities": [{"customer_id": 3}]},
    )
    assert set(served["statuses"][0].values()) == {"present"}, served

    # where everything landed
    keys = day.bucket()
    prefixes = {
        "mlflow/": "MLflow's artifacts (models of the job and of the notebook)",
        "data/datasets/": "the training job's dataset",
        "data/checkpoints/": "Ray Train's checkpoints",
        "data/predictions/model=churn/": "the prediction log",
        "data/feast/": "the feature store's offline data",
    }
    for prefix, what in prefixes.items():
        assert any(k.startswith(prefix) for k in keys), (what, prefix, sorted(keys)[:50])
    assert any(k.startswith("mlflow/") and k.endswith("/MLmodel") for k in keys)
    # the drift reference the training job profiled, with its run's artifacts
    assert any(k.startswith("mlflow/") and k.endswith(REFERENCE_ARTIFACT) for k in keys)
    local = [
        str(path.relative_to(day.service.data_dir))
        for path in day.service.data_dir.rglob("*")
        if path.is_file()
    ]
    assert [p for p in local if not p.startswith(LOCAL_ONLY)] == [], local


def test_a_restart_keeps_every_acknowledged_write(day: Day) -> None:
    before = acknowledged(day)
    deployment = day.ok("GET", "/models/ab/deployment", Role.VIEWER)
    day.service.stop()
    day.service.start(day.env, timeout_s=600)
    assert acknowledged(day) == before
    after = day.ok("GET", "/models/ab/deployment", Role.VIEWER)
    assert [v["version"] for v in after["variants"]] == [
        v["version"] for v in deployment["variants"]
    ]
    assert wait_for(lambda: predicts(day), "the deployment did not come back", timeout_s=300)


def acknowledged(day: Day) -> dict[str, Any]:
    """What the stores hold that the day wrote: versions, experiments, online features,
    MLflow's artifacts."""
    return {
        "versions": [v["version"] for v in day.ok("GET", "/models/ab", Role.VIEWER)["versions"]],
        "experiments": sorted(
            e["name"] for e in day.ok("GET", "/experiments", Role.VIEWER)["items"]
        ),
        "online_keys": int(day.stack.redis_cli("dbsize")),
        "artifacts": sorted(k for k in day.bucket() if k.startswith("mlflow/")),
    }


def predicts(day: Day) -> bool:
    """Both A/B variants answer (20 unkeyed requests: each variant gets some, so a
    version whose metadata this ingress has not read yet is among them)."""
    body = {"model": "ab", "inputs": [[0.1, 0.2, 0.3, 0.4]]}
    answers = [day.call("POST", "/predict", Role.VIEWER, json=body) for _ in range(20)]
    return all(a.status_code == 200 for a in answers)


@pytest.mark.parametrize(
    ("store", "components", "request_of", "code"),
    [
        (
            "postgres",
            {"mlflow_store", "state_store"},
            lambda day: day.call("GET", "/experiments", Role.VIEWER),
            "tracking_store_unavailable",
        ),
        (
            "s3",
            {"storage", "artifact_store"},
            lambda day: day.call(
                "POST",
                "/models",
                json={
                    "name": "ab",
                    "run_id": day.ok("GET", "/models/ab", Role.VIEWER)["versions"][0]["run_id"],
                },
            ),
            "object_store_unavailable",
        ),
        (
            "redis",
            {"feature_online_store"},
            lambda day: day.call(
                "POST",
                "/features/serve",
                Role.VIEWER,
                json={"feature_service": "churn_v1", "entities": [{"customer_id": 3}]},
            ),
            "feature_store_unavailable",
        ),
    ],
)
def test_a_store_outage_is_a_503_naming_it_and_recovers_by_itself(
    day: Day,
    store: str,
    components: set[str],
    request_of: Callable[[Day], httpx.Response],
    code: str,
) -> None:
    assert wait_for(lambda: predicts(day), "no predictions before the outage")
    before = acknowledged(day)
    day.stack.run("stop", store)
    try:
        started = time.monotonic()
        answer = request_of(day)
        assert time.monotonic() - started < OUTAGE_ANSWER_S
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["code"] == code, answer.text
        down = wait_for(
            lambda: (d := {n for n, s in day.health().items() if s == "down"}) >= components and d,
            "readiness never noticed",
            timeout_s=90,
        )
        # Feast's registry is in PostgreSQL too: the online store's probe may also go down
        # (once its registry cache expires)
        also = {"feature_online_store"} if store == "postgres" else set()
        assert down - components <= also, day.health_report()
        assert predicts(day), "a loaded version stopped predicting"
        assert day.call("GET", "/models/ab", Role.VIEWER).status_code == 200
    finally:
        day.stack.run("start", store)
    wait_for(lambda: request_of(day).status_code < 500, f"no recovery after {store} came back")
    wait_for(lambda: set(day.health().values()) == {"ok"}, "readiness did not recover")
    assert acknowledged(day) == before
