"""From a first model to its successor in production, as docs/registry.md walks it, on a
fresh service (`scripts/serve`) with the default policy: train the small first model,
take it to production; tune, take the best trial to staging, A/B it against production
with label feedback until the verdict is significant, promote it through every gate; the
old version is archived once drained, by the controller. MLflow's aliases match the
stages at every step. Along the way, the sample churn model's class scores are scored
right by label feedback, a JSON integer for a double feature is served, and a wrong
number of features is the client's 422, never the version's error."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import mlflow
import numpy as np
import pytest
import yaml

from app.core.access import Role
from app.samples import churn
from testkit.auth import Tokens
from testkit.service import ROOT, Service

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BASE = "/api/v1/ml"
FEATURES = list(churn.FEATURES)


class Client:
    def __init__(self, service: Service, tokens: Tokens) -> None:
        self.service, self.tokens = service, tokens
        self.http = httpx.Client(base_url=service.url + BASE, timeout=300)

    def call(self, method: str, path: str, role: Role = Role.ENGINEER, **kw: Any) -> httpx.Response:
        return self.http.request(method, path, headers=self.tokens.header(role), **kw)

    def ok(self, method: str, path: str, role: Role = Role.ENGINEER, **kw: Any) -> Any:
        response = self.call(method, path, role, **kw)
        assert response.status_code < 300, (path, response.status_code, response.text)
        return response.json() if response.content else None

    def train(self, config: str) -> int:
        spec = yaml.safe_load((ROOT / "configs" / "training" / config).read_text())
        job = self.ok("POST", "/training/submit", json=spec)
        deadline = time.monotonic() + 900
        while True:
            state = self.ok("GET", f"/training/{job['job_id']}", Role.VIEWER)
            if state["state"] in ("succeeded", "failed", "stopped"):
                break
            assert time.monotonic() < deadline, state
            time.sleep(2)
        assert state["state"] == "succeeded", state
        return int(state["registered"]["version"])

    def promote(self, version: int, to: str) -> dict[str, Any]:
        return dict(self.ok("POST", "/models/churn/promote", json={"version": version, "to": to}))

    def stages(self) -> dict[int, str]:
        return {
            v["version"]: v["stage"]
            for v in self.ok("GET", "/models/churn", Role.VIEWER)["versions"]
        }

    def aliases(self) -> dict[str, int]:
        mlflow_client = mlflow.MlflowClient(f"{self.service.url}/mlflow")
        found = mlflow_client.get_registered_model("churn").aliases
        return {alias: int(version) for alias, version in found.items()}

    def predict(self, rows: list[dict[str, Any]], key: str | None = None) -> httpx.Response:
        body: dict[str, Any] = {"model": "churn", "inputs": rows}
        if key:
            body["request_key"] = key
        return self.call("POST", "/predict", Role.VIEWER, json=body)

    def wait_served(self, count: int) -> None:
        """Until the traffic actor has counted `count` requests (with their references)."""
        deadline = time.monotonic() + 60
        while sum(v["requests"] for v in self.variants().values()) < count:
            assert time.monotonic() < deadline, self.variants()
            time.sleep(0.2)

    def served(self) -> int:
        return sum(v["requests"] for v in self.variants().values())

    def variants(self) -> dict[str, dict[str, Any]]:
        return {
            v["name"]: v
            for v in self.ok("GET", "/models/churn/deployment", Role.VIEWER)["variants"]
        }


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    service = Service(tmp_path_factory.mktemp("lifecycle"))
    tokens = Tokens()
    service.start(
        {
            "ML_AUTH__TOKENS": json.dumps(tokens.entries()),
            "ML_SERVING__STATS_FLUSH_S": "0.2",
            "ML_SERVING__DRAIN_WINDOW_S": "2",
            "ML_SERVING__LIFECYCLE_TICK_S": "0.5",
        }
    )
    import os

    os.environ["MLFLOW_TRACKING_TOKEN"] = tokens.by_role[Role.VIEWER]
    try:
        yield Client(service, tokens)
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        service.stop()


def customers(seed: int, count: int) -> tuple[list[dict[str, Any]], list[int]]:
    """Rows as a JSON client sends them (whole numbers as JSON integers), and the truth."""
    frame = churn.generate(count, seed)
    rows = [
        {
            name: int(value) if float(value).is_integer() else float(value)
            for name, value in row.items()
        }
        for row in frame[FEATURES].to_dict(orient="records")
    ]
    return rows, [int(y) for y in frame[churn.TARGET]]


def top_class(scores: dict[str, float]) -> int:
    return int(max(scores, key=lambda k: scores[k]))


def test_from_a_first_model_to_its_successor_in_production(client: Client) -> None:
    rows, truth = customers(seed=77, count=4000)

    # 1. the small first model, validated, deployed, approved, in production
    first = client.train("churn_baseline.yaml")
    client.promote(first, "staging")
    assert client.aliases() == {"staging": first}
    client.ok("POST", "/models/churn/deploy", json={"strategy": "replace", "version": first})
    client.ok("POST", "/models/churn/approvals", Role.APPROVER, json={"version": first})
    served = 0
    while (
        client.call(
            "POST", "/models/churn/promote", json={"version": first, "to": "production"}
        ).status_code
        != 200
    ):
        for row in rows[served : served + 25]:  # the integration check's requests
            assert client.predict([row]).status_code in (200, 404)
        served += 25
        assert served < 1000, "the first version never passed its production gates"
    assert client.stages()[first] == "production" and client.aliases() == {"production": first}

    # integers for double features are served; a wrong number of features is the
    # client's mistake (422 naming it), not the version's error
    whole = dict.fromkeys(FEATURES, 3)
    counted = client.served()
    assert client.predict([whole]).status_code == 200
    client.wait_served(counted + 1)
    errors_before = client.variants()[f"v{first}"]["errors"]
    short = client.predict([[1, 2, 3]])
    assert short.status_code == 422 and short.json()["errors"][0]["field"] == "inputs[0]"
    assert client.predict([whole]).status_code == 200  # counted after the refused one
    client.wait_served(counted + 2)
    assert client.variants()[f"v{first}"]["errors"] == errors_before == 0

    # 2. tuning, the best trial to staging under the default policy (better on the
    # evaluation metrics; bookkeeping metrics such as epoch are not compared)
    tuned = client.train("churn_tune.yaml")
    staged = client.promote(tuned, "staging")
    metrics_gate = {c["gate"]: c for c in staged["checks"]}["metrics_baseline"]
    assert metrics_gate["passed"], metrics_gate
    assert set(metrics_gate["inputs"]["evaluation_metrics"]) == {"val_loss", "val_accuracy"}
    assert client.aliases() == {"production": first, "staging": tuned}

    # 3. A/B against production with label feedback, until the verdict is significant
    client.ok(
        "POST",
        "/models/churn/deploy",
        json={
            "strategy": "ab",
            "variants": [{"version": first, "weight": 50}, {"version": tuned, "weight": 50}],
        },
    )
    right: dict[str, list[bool]] = {}
    verdict: dict[str, Any] = {}
    for start in range(0, len(rows), 200):
        counted = client.served()
        items = []
        for i in range(start, start + 200):
            answer = client.predict([rows[i]], key=f"customer-{i}")
            assert answer.status_code == 200, answer.text
            body = answer.json()
            right.setdefault(body["variant"], []).append(
                top_class(body["predictions"][0]) == truth[i]
            )
            items.append({"request_id": body["request_id"], "label": truth[i]})
        client.wait_served(counted + 200)  # the references reached the traffic actor
        client.ok("POST", "/feedback", json={"items": items})
        verdict = client.ok("GET", "/models/churn/deployment", Role.VIEWER)["verdicts"][0]
        if verdict["status"] == "winner":
            break
    assert verdict["status"] == "winner" and verdict["winner"] == f"v{tuned}", verdict
    quality = {name: v["quality"] for name, v in client.variants().items() if name in right}
    for name, flags in right.items():  # each arm's true accuracy on these labels
        assert quality[name] == pytest.approx(np.mean(flags)), (name, quality)

    # 4. through every gate to production; the first version drains and is archived
    client.ok("POST", "/models/churn/approvals", Role.APPROVER, json={"version": tuned})
    promoted = client.promote(tuned, "production")
    checks = {c["gate"]: c for c in promoted["checks"]}
    assert all(c["passed"] and not c["waived"] for c in checks.values()), checks
    assert client.aliases() == {"production": tuned}
    weights = {name: v["weight"] for name, v in client.variants().items()}
    assert weights[f"v{tuned}"] == 100 and weights[f"v{first}"] == 0
    deadline = time.monotonic() + 60
    while client.stages()[first] != "archived":
        assert time.monotonic() < deadline, client.stages()
        time.sleep(0.5)
    assert client.stages() == {first: "archived", tuned: "production"}
    assert client.aliases() == {"production": tuned}
    policy = client.ok("GET", "/models/churn", Role.VIEWER)["policy_source"]
    assert policy == "default"  # no manual policy edit on the way
