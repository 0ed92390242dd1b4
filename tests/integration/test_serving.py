"""Deploy, predict, A/B, shadow and canary through the Serve application on real Ray,
with real MLflow models, the real registry and traffic actors."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import mlflow
import numpy as np
import pytest
import ray

from app.core.access import Role
from app.settings import Settings
from testkit.auth import Tokens
from testkit.models import log_flaky_run, log_model_run
from testkit.waiting import wait_for
from tests.integration.actor_restarts import kill_and_wait_restarted
from tests.integration.ml_app import running_ml_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE = "/api/v1/ml"
ROWS = [[0.1, 0.2, 0.3, 0.4], [0.9, 0.1, 0.5, 0.2], [0.3, 0.3, 0.3, 0.3]]


@dataclass
class Service:
    url: str
    tokens: Tokens
    settings: Settings
    http: httpx.Client

    def headers(self, role: Role = Role.ENGINEER) -> dict[str, str]:
        return self.tokens.header(role)

    def post(self, path: str, body: Any, role: Role = Role.ENGINEER) -> httpx.Response:
        return self.http.post(BASE + path, json=body, headers=self.headers(role))

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(BASE + path, params=params, headers=self.headers(Role.VIEWER))

    def register(self, model: str, run_id: str, staged: bool = True) -> int:
        """Register; then (`staged`) promote to staging: only staging and production
        versions take live traffic (development ones may only shadow)."""
        response = self.post("/models", {"name": model, "run_id": run_id})
        assert response.status_code == 201, response.text
        version = int(response.json()["version"])
        if staged:
            promoted = self.post(f"/models/{model}/promote", {"version": version, "to": "staging"})
            assert promoted.status_code == 200, promoted.text
        return version

    def deploy(self, model: str, **body: Any) -> dict[str, Any]:
        response = self.post(f"/models/{model}/deploy", body)
        assert response.status_code == 200, response.text
        self.wait_for_revision(model, response.json()["revision"])
        return dict(response.json())

    def wait_for_revision(self, model: str, revision: int) -> None:
        """Ingress replicas follow the table by long-poll: give them a moment."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = self.post("/predict", {"model": model, "inputs": ROWS[:1]}, Role.VIEWER)
            if probe.status_code in (200, 502):
                return
            time.sleep(0.1)

    def predict(
        self, model: str, rows: list[list[float]], key: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "inputs": rows}
        if key is not None:
            body["request_key"] = key
        response = self.post("/predict", body, Role.VIEWER)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def deployment(self, model: str, until: Any, what: str, seconds: float = 30) -> dict[str, Any]:
        """The model's deployment view once `until(view)` holds (stats and references
        reach the traffic actor in batches)."""

        def view() -> dict[str, Any]:
            found = dict(self.get(f"/models/{model}/deployment").json())
            assert until(found), found  # not yet: the last view names what was seen
            return found

        return wait_for(view, what, timeout_s=seconds, poll_s=0.1)

    def log_run(self, **kwargs: Any) -> str:
        mlflow_settings = self.settings.mlflow
        return log_model_run(
            mlflow_settings.tracking_uri, mlflow_settings.artifact_root, "serving", **kwargs
        ).run_id


@pytest.fixture(scope="module")
def service(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    env = {
        "ML_SERVING__CANARY_TICK_S": "0.2",
        "ML_SERVING__STATS_FLUSH_S": "0.2",
        "ML_SERVING__DRAIN_WINDOW_S": "1",
        "ML_SERVING__LIFECYCLE_TICK_S": "0.3",
        "ML_SERVING__MAX_BATCH_SIZE": "8",  # the batched path (default off, see README)
    }
    data = tmp_path_factory.mktemp("serving") / "data"
    with running_ml_app(data, env) as app, httpx.Client(base_url=app.url, timeout=120) as http:
        yield Service(app.url, app.tokens, app.settings, http)


def keyed(service: Service, model: str, keys: list[str]) -> dict[str, str]:
    def one(key: str) -> tuple[str, str]:
        return key, service.predict(model, ROWS[:1], key)["variant"]

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(one, keys))


def test_replace_then_ab_with_sticky_keys(service: Service) -> None:
    v1 = service.register("churn", service.log_run(seed=1))
    v2 = service.register("churn", service.log_run(seed=2))
    service.deploy("churn", strategy="replace", version=v1)
    answer = service.predict("churn", ROWS)
    assert (answer["version"], answer["variant"]) == (v1, "v1")
    local = mlflow.pyfunc.load_model(f"models:/churn/{v1}").predict(
        np.asarray(ROWS, dtype="float32")
    )
    np.testing.assert_allclose(answer["predictions"], local, rtol=1e-6)

    service.deploy(
        "churn",
        strategy="ab",
        variants=[{"version": v1, "weight": 50}, {"version": v2, "weight": 50}],
    )
    keys = [f"customer-{i}" for i in range(2_000)]
    first = keyed(service, "churn", keys)
    shares = Counter(first.values())
    assert set(shares) == {"v1", "v2"}
    # The table's salt is random, so the split is a binomial draw: within 5 standard
    # deviations (sqrt(2000 / 4) = 22.4 keys) of 1,000, which fails about once in 2 million.
    assert all(abs(count - 1_000) <= 5 * math.sqrt(2_000 / 4) for count in shares.values()), shares
    again = keyed(service, "churn", keys[:200])
    assert all(again[k] == first[k] for k in again)

    traffic = ray.get_actor(service.settings.serving.traffic_actor_name, namespace="ml-service")
    kill_and_wait_restarted(traffic)  # it restarts from the database
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if service.get("/models/churn/deployment").status_code == 200:
            break
        time.sleep(0.5)
    after = keyed(service, "churn", keys[:200])
    assert after == {k: first[k] for k in keys[:200]}


def test_shadow_changes_no_answer_and_records_the_candidate(service: Service) -> None:
    v1 = service.register("fraud", service.log_run(seed=11))
    v2 = service.register("fraud", service.log_run(seed=12))
    service.deploy("fraud", strategy="replace", version=v1)
    before = [service.predict("fraud", [row], f"k{i}") for i, row in enumerate(ROWS * 4)]
    service.deploy("fraud", strategy="shadow", version=v2, percent=100)
    during = [service.predict("fraud", [row], f"k{i}") for i, row in enumerate(ROWS * 4)]
    strip = [(a["variant"], a["version"], a["predictions"]) for a in before]
    assert [(a["variant"], a["version"], a["predictions"]) for a in during] == strip
    deadline = time.monotonic() + 10
    shadow: dict[str, Any] = {}
    while time.monotonic() < deadline:
        view = service.get("/models/fraud/deployment").json()
        shadow = next(v for v in view["variants"] if v["role"] == "shadow")
        if shadow["requests"] >= 12:
            break
        time.sleep(0.2)
    assert shadow["version"] == v2 and shadow["requests"] >= 12 and shadow["errors"] == 0
    assert shadow["shadow_agreement"] is not None and 0 <= shadow["shadow_agreement"] <= 1
    database = service.settings.state.database_url
    assert database
    import sqlalchemy as sa

    engine = sa.create_engine(database)
    with engine.connect() as conn:
        recorded = conn.execute(
            sa.text("SELECT count(*) FROM prediction_refs WHERE model = 'fraud' AND variant = :v"),
            {"v": shadow["name"]},
        ).scalar()
    engine.dispose()
    assert recorded >= 12


def wait_for_phase(
    service: Service, model: str, phase: str, traffic: list[list[float]], seconds: float = 90
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        answer = service.get(f"/models/{model}/deployment")
        assert answer.status_code in (200, 503), answer.text  # 503: an actor restarting
        view = answer.json()
        if answer.status_code == 200 and view["rollout"] and view["rollout"]["phase"] == phase:
            return dict(view)
        if answer.status_code == 200 and view["rollout"]:  # over, the other way: say so now
            assert view["rollout"]["phase"] == "progressing", f"not {phase}: {view}"
        row = traffic[i % len(traffic)]
        service.post("/predict", {"model": model, "inputs": [row]}, Role.VIEWER)
        i += 1
    raise AssertionError(f"rollout never reached {phase}: {view}")


def test_canary_rolls_back_on_errors_and_completes_when_healthy(service: Service) -> None:
    tracking = service.settings.mlflow
    v1 = service.register("churn-canary", service.log_run(seed=21))
    flaky = service.register(
        "churn-canary",
        log_flaky_run(tracking.tracking_uri, tracking.artifact_root, "serving").run_id,
    )
    v3 = service.register("churn-canary", service.log_run(seed=23))
    service.deploy("churn-canary", strategy="replace", version=v1)
    service.deploy(
        "churn-canary",
        strategy="canary",
        version=flaky,
        steps=[30, 100],
        bake_time_s=2,
        min_requests=10,
    )
    mixed = [[0.9, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1]]  # the canary fails on the first
    view = wait_for_phase(service, "churn-canary", "rolled_back", mixed)
    assert "error rate" in view["rollout"]["reason"]
    weights = {v["name"]: v["weight"] for v in view["variants"]}
    assert weights[f"v{v1}"] == 100 and weights[f"v{flaky}"] == 0
    events = service.get("/models/churn-canary/audit").json()["events"]
    rolled_back = [e for e in events if e["type"] == "rollout_rolled_back"]
    assert len(rolled_back) == 1 and "error rate" in rolled_back[0]["payload"]["reason"]
    assert rolled_back[0]["actor"] == "canary-controller"

    service.deploy(
        "churn-canary",
        strategy="canary",
        version=v3,
        steps=[50, 100],
        bake_time_s=1,
        min_requests=10,
    )
    # the traffic actor (routing tables, the canary's controller) dies mid-canary: it
    # restarts from the database and the rollout carries on to its end, never stalls
    assert service.get("/models/churn-canary/deployment").json()["rollout"]["phase"] != (
        "completed"
    )
    traffic = ray.get_actor(service.settings.serving.traffic_actor_name, namespace="ml-service")
    kill_and_wait_restarted(traffic)
    view = wait_for_phase(service, "churn-canary", "completed", [[0.1, 0.2, 0.3, 0.4]])
    weights = {v["name"]: v["weight"] for v in view["variants"]}
    assert weights[f"v{v3}"] == 100 and weights[f"v{v1}"] == 0
    kinds = [e["type"] for e in service.get("/models/churn-canary/audit").json()["events"]]
    assert kinds.count("rollout_step") == 1 and kinds[-1] == "rollout_completed"


def test_feedback_decides_the_ab_test_and_the_production_gate(service: Service) -> None:
    rng = np.random.default_rng(7)
    v1 = service.register("upsell", service.log_run(seed=31))
    v2 = service.register("upsell", service.log_run(seed=32))
    for version in (v1, v2):
        assert (
            service.post(
                "/models/upsell/approvals", {"version": version}, Role.APPROVER
            ).status_code
            == 201
        )
    service.deploy("upsell", strategy="replace", version=v1)
    for i in range(25):
        service.predict("upsell", ROWS[:1], f"warm-{i}")
    service.deployment("upsell", lambda view: view["variants"][0]["requests"] >= 25, "requests")
    # the first production version needs no waiver: its A/B gate is not applicable
    first = service.post("/models/upsell/promote", {"version": v1, "to": "production"})
    assert first.status_code == 200, first.text
    ab_gate = {c["gate"]: c for c in first.json()["checks"]}["ab_test"]
    assert ab_gate["passed"] and not ab_gate["waived"] and "not applicable" in ab_gate["reason"]

    service.deploy(
        "upsell",
        strategy="ab",
        variants=[{"version": v1, "weight": 50}, {"version": v2, "weight": 50}],
    )
    blocked = service.post("/models/upsell/promote", {"version": v2, "to": "production"})
    assert blocked.status_code == 409  # no verdict yet
    truth = {"v1": 0.6, "v2": 0.9}  # v2 is truly better
    answers = [service.predict("upsell", ROWS[:1], f"user-{i}") for i in range(500)]
    feedback = [
        {"request_id": a["request_id"], "outcome": float(rng.random() < truth[a["variant"]])}
        for a in answers
    ]
    response = service.post("/feedback", {"items": feedback})
    assert response.status_code == 202
    assert {r["status"] for r in response.json()["results"]} <= {"recorded", "pending"}
    # pending feedback is joined when its prediction's reference reaches the traffic actor
    view = service.deployment(
        "upsell",
        lambda view: sum(v["outcomes"] for v in view["variants"]) == len(feedback),
        "every outcome joined",
    )
    verdict = view["verdicts"][0]
    assert verdict["status"] == "winner" and verdict["winner"] == "v2", verdict
    assert verdict["srm_ok"] and verdict["confidence_interval"][0] > 0

    promoted = service.post("/models/upsell/promote", {"version": v2, "to": "production"})
    assert promoted.status_code == 200, promoted.text
    checks = {c["gate"]: c for c in promoted.json()["checks"]}
    assert checks["ab_test"]["passed"] and not checks["ab_test"]["waived"]
    assert checks["integration_checks"]["passed"] and checks["manual_approval"]["passed"]
    assert [c["version"] for c in promoted.json()["changes"]] == [v2]  # v1 still serves

    # v2 took the traffic; v1 drains, and the lifecycle controller archives it
    weights = {
        v["name"]: v["weight"] for v in service.get("/models/upsell/deployment").json()["variants"]
    }
    assert weights[f"v{v2}"] == 100 and weights[f"v{v1}"] == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stages = {
            v["version"]: v["stage"] for v in service.get("/models/upsell").json()["versions"]
        }
        if stages[v1] == "archived":
            break
        time.sleep(0.3)
    assert stages == {v1: "archived", v2: "production"}
    events = service.get("/models/upsell/audit").json()["events"]
    archival = [e for e in events if e["type"] == "stage_changed" and e["version"] == v1][-1]
    drained = {c["gate"]: c for c in archival["payload"]["checks"]}["traffic_drained"]
    assert archival["actor"] == "lifecycle-controller" and drained["passed"]


def test_errors_are_clear(service: Service) -> None:
    assert (
        service.post("/predict", {"model": "nope", "inputs": ROWS}, Role.VIEWER).json()["code"]
        == "not_deployed"
    )
    v1 = service.register("broken", service.log_run(seed=41))
    missing = service.post("/models/broken/deploy", {"strategy": "replace", "version": 99})
    assert missing.status_code == 404 and missing.json()["code"] == "model_version_not_found"
    nothing = service.post("/models/broken/deploy", {"strategy": "canary", "version": v1})
    assert nothing.status_code == 409 and nothing.json()["code"] == "nothing_to_compare"
    bad = service.post(
        "/models/broken/deploy",
        {
            "strategy": "ab",
            "variants": [{"version": v1, "weight": 70}, {"version": v1, "weight": 20}],
        },
    )
    assert bad.status_code == 422
    service.deploy("broken", strategy="replace", version=v1)
    ragged = service.post("/predict", {"model": "broken", "inputs": [[1, 2], [1]]}, Role.VIEWER)
    assert ragged.status_code == 422 and ragged.json()["errors"][0]["field"] == "inputs"
    # a row of the wrong width is the client's mistake: 422 naming it, before the model runs
    wrong_width = service.post("/predict", {"model": "broken", "inputs": [[1.0, 2.0]]}, Role.VIEWER)
    assert wrong_width.status_code == 422 and wrong_width.json()["code"] == "validation_failed"
    assert wrong_width.json()["errors"][0]["field"] == "inputs[0]"
    assert "Traceback" not in wrong_width.text
    service.predict("broken", ROWS[:1])  # counted in the same flush as those or a later one
    view = service.deployment("broken", lambda view: view["variants"][0]["requests"] >= 1, "it")
    assert view["variants"][0]["errors"] == 0  # and it is not the version's error
