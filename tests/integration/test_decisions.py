"""Decisions on the live path, through the running `ml` application (real Ray, MLflow,
actors): feedback on class scores, inputs checked against the signature, stages and
traffic agreeing, the first version's production gate, evidence windows and drift for
versions registered from a notebook run. Each test is one of the problems of the
decisions issue, and failed before it. Then diagnoses (`POST /models/{id}/diagnose`) of
seeded scenarios: drift on two features, a worse A/B candidate, a rolled-back canary, a
stale feature view and a healthy model, each with exactly its findings."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest
from mlflow import MlflowClient

from app.core.access import Role
from app.settings import Settings
from testkit.auth import Tokens
from testkit.models import FEATURES, log_scored_run
from tests.integration.ml_app import running_ml_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE = "/api/v1/ml"


@dataclass
class Service:
    url: str
    tokens: Tokens
    settings: Settings
    http: httpx.Client

    def call(self, method: str, path: str, role: Role = Role.ENGINEER, **kw: Any) -> httpx.Response:
        return self.http.request(method, BASE + path, headers=self.tokens.header(role), **kw)

    def ok(self, method: str, path: str, role: Role = Role.ENGINEER, **kw: Any) -> Any:
        response = self.call(method, path, role, **kw)
        assert response.status_code < 300, (path, response.status_code, response.text)
        return response.json() if response.content else None

    def register(self, model: str, stage: str | None = "staging", **run: Any) -> int:
        tracking = self.settings.mlflow
        logged = log_scored_run(tracking.tracking_uri, tracking.artifact_root, "decisions", **run)
        version = int(
            self.ok("POST", "/models", json={"name": model, "run_id": logged.run_id})["version"]
        )
        if stage is not None:
            self.ok("POST", f"/models/{model}/promote", json={"version": version, "to": stage})
        return version

    def deploy(self, model: str, **body: Any) -> dict[str, Any]:
        view = self.ok("POST", f"/models/{model}/deploy", json=body)
        self.wait(lambda: self.predict_status(model) == 200, f"{model} routed")
        return dict(view)

    def predict(self, model: str, inputs: Any, key: str | None = None) -> httpx.Response:
        body: dict[str, Any] = {"model": model, "inputs": inputs}
        if key is not None:
            body["request_key"] = key
        return self.call("POST", "/predict", Role.VIEWER, json=body)

    def predict_status(self, model: str) -> int:
        return self.predict(model, [dict.fromkeys(FEATURES, 0.5)]).status_code

    def view(self, model: str) -> dict[str, Any]:
        return dict(self.ok("GET", f"/models/{model}/deployment", Role.VIEWER))

    def versions(self, model: str) -> dict[int, str]:
        found = self.ok("GET", f"/models/{model}", Role.VIEWER)["versions"]
        return {v["version"]: v["stage"] for v in found}

    def aliases(self, model: str) -> dict[str, int]:
        registered = MlflowClient(self.settings.mlflow.tracking_uri).get_registered_model(model)
        return {alias: int(version) for alias, version in registered.aliases.items()}

    def diagnose(self, model: str, **body: Any) -> dict[str, Any]:
        return dict(self.ok("POST", f"/models/{model}/diagnose", Role.VIEWER, json=body))

    def served(self, model: str) -> int:
        """Requests the traffic actor has counted (with their prediction references)."""
        return sum(v["requests"] for v in self.view(model)["variants"])

    def wait_served(self, model: str, count: int) -> None:
        self.wait(lambda: self.served(model) >= count, f"{count} requests counted")

    @staticmethod
    def wait(condition: Any, what: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def service(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    env = {
        "ML_SERVING__STATS_FLUSH_S": "0.2",
        "ML_SERVING__STATS_PERSIST_S": "0.3",
        "ML_SERVING__CANARY_TICK_S": "0.2",
        "ML_SERVING__DRAIN_WINDOW_S": "1",
        "ML_SERVING__LIFECYCLE_TICK_S": "0.3",
        # the integration check: 10 requests over the last 12 s (fits a slow CI machine)
        "ML_SERVING__INTEGRATION_WINDOW_S": "12",
        "ML_SERVING__INTEGRATION_MIN_REQUESTS": "10",
        "ML_MONITORING__LOG_FLUSH_S": "0.2",
        "ML_MONITORING__POLICY_POLL_S": "0.5",
        "ML_MONITORING__EVALUATE_EVERY_S": "3600",  # evaluated on demand here
        "ML_MONITORING__REFERENCE_ROWS": "300",
        "ML_MONITORING__MIN_SAMPLES": "100",
    }
    data = tmp_path_factory.mktemp("decisions") / "data"
    with running_ml_app(data, env) as app, httpx.Client(base_url=app.url, timeout=120) as http:
        yield Service(app.url, app.tokens, app.settings, http)


def rows(rng: np.random.Generator, count: int, shift: float = 0.0) -> list[dict[str, float]]:
    """Feature rows as JSON clients send them (tenure >= 2: rows a flaky model may fail)."""
    tenure = rng.uniform(2, 10, count) + shift
    charges = rng.uniform(0, 3, count)
    calls = rng.integers(0, 5, count)  # whole numbers, for a double column
    return [
        {"tenure_months": float(t), "monthly_charges": float(c), "support_calls": int(s)}
        for t, c, s in zip(tenure, charges, calls, strict=True)
    ]


def top_class(prediction: dict[str, float]) -> int:
    return int(max(prediction, key=lambda k: prediction[k]))


def test_label_feedback_on_class_scores_gives_each_arms_true_accuracy(service: Service) -> None:
    rng = np.random.default_rng(1)
    v1 = service.register("labels")
    v2 = service.register("labels", weights=(-0.4, 0.9, 0.1, 0.2))
    service.deploy(
        "labels",
        strategy="ab",
        variants=[{"version": v1, "weight": 50}, {"version": v2, "weight": 50}],
    )
    accuracy = {f"v{v1}": 0.9, f"v{v2}": 0.6}  # how often the label is the predicted class
    items, right = [], {name: [] for name in accuracy}
    for i, row in enumerate(rows(rng, 400)):
        answer = service.predict("labels", [row], key=f"c{i}").json()
        predicted = top_class(answer["predictions"][0])
        correct = rng.random() < accuracy[answer["variant"]]
        right[answer["variant"]].append(correct)
        items.append(
            {"request_id": answer["request_id"], "label": predicted if correct else 1 - predicted}
        )
    service.wait_served("labels", 400)  # most references reached the traffic actor
    statuses = service.ok("POST", "/feedback", json={"items": items})["results"]
    assert {s["status"] for s in statuses} <= {"recorded", "pending"}

    def quality() -> dict[str, float | None]:
        return {v["name"]: v["quality"] for v in service.view("labels")["variants"]}

    service.wait(lambda: all(q is not None for q in quality().values()), "feedback joined")
    measured = quality()
    for name, flags in right.items():  # the labels' own accuracy, exactly (before: 0.0)
        assert measured[name] == pytest.approx(sum(flags) / len(flags))
    assert measured[f"v{v1}"] > measured[f"v{v2}"]

    counted = service.served("labels")  # every request above (the labels joined)
    unlabelled = service.predict("labels", rows(rng, 1), key="unlabelled").json()["request_id"]
    service.wait_served("labels", counted + 1)
    mismatched = service.call(
        "POST", "/feedback", json={"items": [{"request_id": unlabelled, "label": [1, 0]}]}
    )
    assert mismatched.status_code == 422, mismatched.text  # one label per row, never "wrong"
    assert mismatched.json()["errors"][0]["field"] == "items[0].label"

    # the diagnosis: the worse candidate, from the A/B verdict
    service.wait(
        lambda: service.view("labels")["verdicts"][0]["status"] == "winner", "a verdict", 30
    )
    diagnosis = service.diagnose("labels")
    assert findings(diagnosis) == [("quality_gap", v2, f"v{v2}", "warning")]
    gap = diagnosis["findings"][0]
    assert gap["numbers"]["baseline_version"] == v1
    assert gap["numbers"]["candidate_mean"] == pytest.approx(measured[f"v{v2}"])
    assert gap["links"] == [f"{BASE}/models/labels/deployment"]
    assert diagnosis["explanation"] is None
    assert (
        diagnosis["note"] == "no diagnostics assistant is configured (diagnostics.assistant_model)"
    )


def test_inputs_are_checked_against_the_signature_and_mistakes_are_not_the_versions(
    service: Service,
) -> None:
    version = service.register("inputs")
    service.deploy("inputs", strategy="replace", version=version)
    signature = service.ok("GET", f"/models/inputs/versions/{version}/signature", Role.VIEWER)
    assert [c["name"] for c in signature["inputs"]] == list(FEATURES)
    assert {c["type"] for c in signature["inputs"]} == {"double"}
    assert signature["input_example"][0]["tenure_months"] == 0.5

    whole = service.predict(
        "inputs", [{"tenure_months": 40, "monthly_charges": 2, "support_calls": 1}]
    )
    assert whole.status_code == 200, whole.text  # JSON integers for double columns
    plain = service.predict("inputs", [[40, 2.5, 1]])
    assert plain.status_code == 200, plain.text  # a plain row, one value per column in order

    def errors() -> tuple[int, int]:
        variant = service.view("inputs")["variants"][0]
        return int(variant["errors"]), int(variant["requests"])

    service.wait(lambda: errors()[1] >= 2, "requests counted")
    before = errors()
    short = service.predict("inputs", [[40, 2.5]])
    assert short.status_code == 422, short.text
    assert short.json()["errors"][0]["field"] == "inputs[0]"
    assert "the model takes 3" in short.json()["errors"][0]["message"]
    typo = service.predict(
        "inputs", [{"tenure_month": 4, "monthly_charges": 2, "support_calls": 1}]
    )
    assert typo.status_code == 422
    assert {e["field"] for e in typo.json()["errors"]} == {"inputs[0].tenure_months"}
    text = service.predict(
        "inputs", [{"tenure_months": "long", "monthly_charges": 2, "support_calls": 1}]
    )
    assert (
        text.status_code == 422 and text.json()["errors"][0]["field"] == "inputs[0].tenure_months"
    )
    service.predict("inputs", [[1.0, 2.0, 3.0]])
    service.wait(lambda: errors()[1] >= before[1] + 1, "the good request counted")
    assert errors()[0] == before[0] == 0  # client mistakes never count as the version's errors


def test_development_versions_only_shadow_and_production_takes_the_traffic(
    service: Service,
) -> None:
    rng = np.random.default_rng(5)
    v1 = service.register("handover")
    draft = service.register("handover", stage=None)  # development
    refused = service.call(
        "POST", "/models/handover/deploy", json={"strategy": "canary", "version": draft}
    )
    assert refused.status_code == 409 and refused.json()["code"] == "stage_not_allowed"
    service.deploy("handover", strategy="replace", version=v1)
    service.deploy("handover", strategy="shadow", version=draft)  # a copy only: allowed
    assert (
        service.call(
            "POST",
            "/models/handover/deploy",
            json={
                "strategy": "ab",
                "variants": [{"version": v1, "weight": 50}, {"version": draft, "weight": 50}],
            },
        ).json()["code"]
        == "stage_not_allowed"
    )

    service.ok("POST", "/models/handover/approvals", Role.APPROVER, json={"version": v1})
    first = promote_with_traffic(service, "handover", v1, rng)
    ab_check = {c["gate"]: c for c in first["checks"]}["ab_test"]
    assert ab_check["passed"] and not ab_check["waived"]  # the first version: not applicable
    assert ab_check["inputs"] == {"applicable": False}
    assert service.aliases("handover") == {"production": v1}

    v2 = service.register("handover", weights=(0.7, -0.4, 0.3, 0.1))
    service.deploy(
        "handover",
        strategy="ab",
        variants=[{"version": v1, "weight": 50}, {"version": v2, "weight": 50}],
    )
    service.ok("PUT", "/models/handover/policy", Role.APPROVER, json={"waived_gates": ["ab_test"]})
    service.ok("POST", "/models/handover/approvals", Role.APPROVER, json={"version": v2})
    promote_with_traffic(service, "handover", v2, rng)
    # v2 took the traffic at once; v1 drains and the controller archives it
    live = [
        v for v in service.view("handover")["variants"] if v["weight"] > 0 and v["role"] != "shadow"
    ]
    assert [(v["version"], v["weight"]) for v in live] == [(v2, 100)]
    assert service.aliases("handover")["production"] == v2
    service.wait(lambda: service.versions("handover")[v1] == "archived", "v1 archived", 30)
    assert service.aliases("handover") == {"production": v2}
    events = service.ok("GET", "/models/handover/audit", Role.VIEWER)["events"]
    archival = [
        e for e in events if e["type"] == "stage_changed" and e["payload"]["to"] == "archived"
    ]
    assert archival[-1]["actor"] == "lifecycle-controller" and archival[-1]["version"] == v1


def promote_with_traffic(
    service: Service, model: str, version: int, rng: np.random.Generator
) -> dict[str, Any]:
    """Send traffic until the version's integration check (over the recent window) has
    its requests, then promote it to production."""
    deadline = time.monotonic() + 180
    while True:
        for i, row in enumerate(rows(rng, 30)):
            service.predict(model, [row], key=f"{time.monotonic()}-{i}")
        answer = service.call(
            "POST", f"/models/{model}/promote", json={"version": version, "to": "production"}
        )
        if answer.status_code == 200:
            return dict(answer.json())
        assert time.monotonic() < deadline, answer.text


def test_integration_evidence_counts_a_recent_window_and_names_its_numbers(
    service: Service,
) -> None:
    rng = np.random.default_rng(9)
    flaky = service.register("window", error_rate=0.5)
    service.deploy("window", strategy="replace", version=flaky)
    for row in rows(rng, 60):
        service.predict("window", [row])
    service.ok("POST", "/models/window/approvals", Role.APPROVER, json={"version": flaky})
    service.wait(lambda: service.view("window")["variants"][0]["requests"] >= 60, "counted")
    refused = service.call(
        "POST", "/models/window/promote", json={"version": flaky, "to": "production"}
    )
    assert refused.status_code == 409
    check = {c["gate"]: c for c in refused.json()["context"]["checks"]}["integration_checks"]
    assert "error rate" in check["reason"] and "in the last 12 s" in check["reason"]
    assert check["inputs"]["errors"] > 0 and check["inputs"]["window_s"] == 12

    # the errors age out of the window: healthy requests (rows it never fails on) count
    def passes() -> bool:
        for _ in range(25):
            service.predict(
                "window", [{"tenure_months": 1.0, "monthly_charges": 1.0, "support_calls": 1}]
            )
        answer = service.call(
            "POST", "/models/window/promote", json={"version": flaky, "to": "production"}
        )
        return answer.status_code == 200

    service.wait(passes, "the integration check over the recent window", 180)


def test_drift_is_watched_for_a_version_from_a_notebook_run(service: Service) -> None:
    rng = np.random.default_rng(13)
    version = service.register("notebook")  # no reference logged by its run
    service.deploy("notebook", strategy="replace", version=version)
    plain = [[r["tenure_months"], r["monthly_charges"], r["support_calls"]] for r in rows(rng, 300)]
    for start in range(0, 300, 50):
        assert service.predict("notebook", plain[start : start + 50]).status_code == 200
    service.ok("POST", "/models/notebook/monitoring/evaluate")  # takes the first 300 rows
    time.sleep(0.5)
    for row_block in (rows(rng, 150, shift=6.0), rows(rng, 150, shift=6.0)):
        assert service.predict("notebook", row_block).status_code == 200

    def evaluation() -> dict[str, Any]:
        found = service.ok("POST", "/models/notebook/monitoring/evaluate")
        return dict(found[0]) if found else {}

    service.wait(lambda: evaluation().get("reference_source") == "live_window", "a live reference")
    latest = evaluation()
    assert latest["window"]["rows"] >= 100
    names = {f["feature"] for f in latest["features"]}
    assert set(FEATURES) <= names  # plain rows were logged under the signature's names
    assert "tenure_months" in latest["drifted"]  # the shifted traffic drifted


def findings(diagnosis: dict[str, Any]) -> list[tuple[str, int | None, str | None, str]]:
    """The findings as (kind, version, subject, severity), sorted."""
    return sorted(
        (f["kind"], f["version"], f["subject"], f["severity"]) for f in diagnosis["findings"]
    )


def above_info(diagnosis: dict[str, Any]) -> list[tuple[str, int | None, str | None, str]]:
    return [f for f in findings(diagnosis) if f[3] != "info"]


def test_diagnosis_of_drift_on_two_features_after_a_deploy(service: Service) -> None:
    rng = np.random.default_rng(17)
    version = service.register("diag-drift")
    service.deploy("diag-drift", strategy="replace", version=version)
    assert service.predict("diag-drift", rows(rng, 300)).status_code == 200
    service.ok("POST", "/models/diag-drift/monitoring/evaluate")  # the first rows: reference
    shifted = rows(rng, 300)
    for row in shifted:
        row["tenure_months"] += 6.0
        row["monthly_charges"] += 3.0
    assert service.predict("diag-drift", shifted).status_code == 200

    def drifted() -> set[str]:
        found = service.ok("POST", "/models/diag-drift/monitoring/evaluate")
        return set(found[0]["drifted"]) if found else set()

    service.wait(lambda: {"tenure_months", "monthly_charges"} <= drifted(), "the drift")
    diagnosis = service.diagnose("diag-drift", question="what is wrong, and since when?")
    features = {f[2] for f in findings(diagnosis) if f[0] == "feature_drift"}
    assert features == {"tenure_months", "monthly_charges"}, diagnosis
    expected = sorted(
        [("feature_drift", version, name, "warning") for name in features]
        + [("drift_after_deploy", version, name, "info") for name in features]
        + [
            (kind, version, "prediction", severity)
            for kind, severity in (("prediction_drift", "warning"), ("drift_after_deploy", "info"))
            if "__prediction__" in drifted()
        ]
    )
    assert findings(diagnosis) == expected
    tenure = next(
        f for f in diagnosis["findings"] if f["id"] == f"feature_drift-v{version}-tenure_months"
    )
    assert tenure["numbers"]["psi"] > 0.2 and tenure["numbers"]["reference"] == "live_window"
    assert tenure["started_at"] is not None
    assert f"{BASE}/models/diag-drift/monitoring" in tenure["links"]
    after = next(f for f in diagnosis["findings"] if f["related"] == [tenure["id"]])
    assert after["kind"] == "drift_after_deploy" and after["numbers"]["deployed_version"] == version
    again = service.diagnose("diag-drift")
    assert [f["id"] for f in again["findings"]] == [f["id"] for f in diagnosis["findings"]]


def test_diagnosis_of_a_rolled_back_canary(service: Service) -> None:
    rng = np.random.default_rng(19)
    v1 = service.register("diag-canary")
    flaky = service.register("diag-canary", error_rate=0.5)
    service.deploy("diag-canary", strategy="replace", version=v1)
    service.ok(
        "POST",
        "/models/diag-canary/deploy",
        json={
            "strategy": "canary",
            "version": flaky,
            "steps": [50, 100],
            "bake_time_s": 1,
            "min_requests": 10,
        },
    )

    def rolled_back() -> bool:
        for row in rows(rng, 10):
            service.predict("diag-canary", [row])
        rollout = service.view("diag-canary")["rollout"]
        return bool(rollout and rollout["phase"] == "rolled_back")

    service.wait(rolled_back, "the rollback", 90)
    diagnosis = service.diagnose("diag-canary")
    assert findings(diagnosis) == [("canary_rolled_back", flaky, None, "warning")], diagnosis
    rolled = diagnosis["findings"][0]
    assert "error rate" in rolled["numbers"]["reason"]
    assert rolled["numbers"]["evidence"]["tests"]["errors"]["decision"] == "breach"


def test_diagnosis_of_a_stale_feature_view(service: Service) -> None:
    version = service.register("diag-stale", tags={"mlservice.feature_service": "churn_v1"})
    service.deploy("diag-stale", strategy="replace", version=version)
    end = datetime.now(UTC) - timedelta(days=2, hours=3)  # customer_stats' TTL is 2 days
    service.ok("POST", "/features/materialize", json={"end": end.isoformat()})
    diagnosis = service.diagnose("diag-stale")
    assert findings(diagnosis) == [("stale_features", version, "churn_v1", "warning")], diagnosis
    stale = next(f for f in diagnosis["findings"] if f["kind"] == "stale_features")
    assert set(stale["numbers"]["views"]) == {"customer_stats"}
    assert stale["numbers"]["views"]["customer_stats"]["freshness"] == "stale"
    assert "stale for 3.0 h" in stale["title"]


def test_diagnosis_of_a_healthy_model_and_bad_requests(service: Service) -> None:
    rng = np.random.default_rng(23)
    version = service.register("diag-healthy")
    service.deploy("diag-healthy", strategy="replace", version=version)
    for row in rows(rng, 60):
        assert service.predict("diag-healthy", [row]).status_code == 200
    service.wait(lambda: service.served("diag-healthy") >= 60, "the requests counted")
    diagnosis = service.diagnose("diag-healthy", window_s=3600)
    assert above_info(diagnosis) == [], diagnosis
    assert {f["severity"] for f in diagnosis["findings"]} <= {"info"}

    for path, body, status, field in (
        ("/models/no-such-model/diagnose", {}, 404, None),
        ("/models/diag-healthy/diagnose", {"version": 99}, 404, None),
        ("/models/diag-healthy/diagnose", {"window_s": -5}, 422, "window_s"),
        ("/models/diag-healthy/diagnose", {"window_s": "a day"}, 422, "window_s"),
        ("/models/diag-healthy/diagnose", {"wat": 1}, 422, "wat"),
    ):
        response = service.call("POST", path, Role.VIEWER, json=body)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        if field:
            assert field in {e["field"] for e in response.json()["errors"]}, response.text
    assert service.http.post(f"{BASE}/models/diag-healthy/diagnose", json={}).status_code == 401
