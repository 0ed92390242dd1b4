"""Monitoring end to end on a real cluster: a churn model trained by a real Ray job (its
drift reference logged in MLflow), deployed, sent traffic; the prediction log, drift per
feature, alerts to a real webhook (signed), retraining through a real job, the monitoring
view, the report and the Prometheus metrics."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from app.core.access import Role
from app.core.drift import PREDICTION
from app.core.monitoring import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from app.samples import churn
from testkit.auth import Tokens
from testkit.service import free_port
from testkit.waiting import wait_for
from tests.integration.ml_app import running_ml_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE = "/api/v1/ml"
MODEL = "churn-monitored"
SECRET = "webhook-s3cret"
WINDOW_S = 6.0  # wide enough for 8 sequential requests on a busy 2-core machine
ROWS_PER_REQUEST = 50


@dataclass
class Hook:
    """A real HTTP webhook receiver; keeps what it was sent."""

    url: str
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture(scope="module")
def hook() -> Iterator[Hook]:
    received: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Hook(f"http://127.0.0.1:{port}/alerts", received)
    server.shutdown()


@dataclass
class Service:
    http: httpx.Client
    tokens: Tokens
    monitor_actor: str
    sent_requests: int = 0

    def call(self, method: str, path: str, role: Role = Role.ENGINEER, **kw: Any) -> Any:
        response = self.http.request(method, BASE + path, headers=self.tokens.header(role), **kw)
        assert response.status_code < 300, (path, response.status_code, response.text)
        return response.json() if "json" in response.headers.get("content-type", "") else response

    def wait_job(self, job_id: str, seconds: float = 420) -> dict[str, Any]:
        def ended() -> dict[str, Any]:  # empty (falsy) until it ended
            job = self.call("GET", f"/training/{job_id}", Role.VIEWER)
            return dict(job) if job["state"] in ("succeeded", "failed", "stopped") else {}

        return wait_for(ended, f"job {job_id} to end", timeout_s=seconds, poll_s=0.5)

    def traffic(self, frame: pd.DataFrame) -> None:
        """Send `frame`'s feature rows to /predict, ROWS_PER_REQUEST at a time."""
        features = frame[list(churn.FEATURES)]
        for start in range(0, len(features), ROWS_PER_REQUEST):
            chunk = features.iloc[start : start + ROWS_PER_REQUEST]
            body = {"model": MODEL, "inputs": chunk.to_dict(orient="list")}
            self.call("POST", "/predict", Role.VIEWER, json=body)
            self.sent_requests += 1

    def evaluate(self) -> dict[int, dict[str, Any]]:
        found = self.call("POST", f"/models/{MODEL}/monitoring/evaluate")
        return {d["version"]: d for d in found}

    def set_policy(self, **policy: Any) -> None:
        self.call("PUT", f"/models/{MODEL}/monitoring/policy", json=policy)


def spec(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "experiment": "churn-monitored",
        "trainer": "mlp_classifier",
        "dataset": {"generate": {"rows": 4000, "seed": 0}, "target": "churned"},
        "params": {"hidden": [16], "lr": 0.01, "epochs": 2, "batch_size": 128},
        "scaling": {"num_workers": 1, "cpus_per_worker": 0.5},
        "register": {"model": MODEL},
    }
    body.update(overrides)
    return body


@pytest.fixture(scope="module")
def service(
    ray_cluster: None, tmp_path_factory: pytest.TempPathFactory, hook: Hook
) -> Iterator[Service]:
    workdir = tmp_path_factory.mktemp("monitoring")
    env = {
        "ML_TRAINING__WORKDIR": str(workdir),
        "ML_SERVING__STATS_FLUSH_S": "0.2",
        "ML_MONITORING__LOG_FLUSH_S": "0.2",
        "ML_MONITORING__POLICY_POLL_S": "0.5",
        "ML_MONITORING__EVALUATE_EVERY_S": "3600",  # the tests evaluate on demand
        "ML_MONITORING__WEBHOOK_SECRET": SECRET,
    }
    with (
        running_ml_app(workdir / "data", env) as app,
        httpx.Client(base_url=app.url, timeout=120) as http,
    ):
        service = Service(http, app.tokens, app.settings.monitoring.actor_name)
        job = service.call("POST", "/training/submit", json=spec())
        done = service.wait_job(job["job_id"])
        assert done["state"] == "succeeded", done
        service.call("POST", f"/models/{MODEL}/promote", json={"version": 1, "to": "staging"})
        service.call("POST", f"/models/{MODEL}/deploy", json={"strategy": "replace", "version": 1})
        yield service


def drifted_inputs(evaluation: dict[str, Any]) -> list[str]:
    return [
        f["feature"] for f in evaluation["features"] if f["drifted"] and f["feature"] != PREDICTION
    ]


def test_traffic_like_training_raises_no_alarm_and_every_request_is_counted(
    service: Service, hook: Hook
) -> None:
    service.set_policy(window_s=WINDOW_S, cooldown_s=0, webhook_url=hook.url)
    for seed in (11, 12, 13):  # three windows of traffic from the training distribution
        service.traffic(churn.generate(400, seed))
        (evaluation,) = service.evaluate().values()
        assert evaluation["reference"] and evaluation["window"]["rows"] == 400, evaluation
        assert [f["feature"] for f in evaluation["features"] if f["drifted"]] == []
        time.sleep(WINDOW_S + 0.2)  # the next window holds none of these rows
    assert service.call("GET", "/monitoring/alerts", Role.VIEWER)["items"] == []
    assert hook.received == []

    deadline = time.monotonic() + 30
    while True:  # serving stats reach the traffic actor in batches
        view = service.call("GET", f"/models/{MODEL}/monitoring", Role.VIEWER)
        (variant,) = view["variants"]
        if variant["requests"] == service.sent_requests or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert variant["requests"] == service.sent_requests == 24
    assert variant["version"] == 1 and variant["errors"] == 0
    assert variant["latency_ms"]["p50"] > 0 and variant["role"] == "primary"
    assert [d["version"] for d in view["drift"]] == [1]
    assert {f["feature"] for f in view["drift"][0]["features"]} == {
        *churn.FEATURES,
        PREDICTION,
    }


def test_a_shifted_feature_is_flagged_alone_and_sent_once_signed(
    service: Service, hook: Hook
) -> None:
    time.sleep(WINDOW_S + 0.2)  # a fresh window
    shifted = churn.generate(400, 21)
    shifted["age"] += 15  # age does not drive churn: the predictions stay put
    service.traffic(shifted)
    (evaluation,) = service.evaluate().values()
    assert drifted_inputs(evaluation) == ["age"], evaluation["drifted"]
    service.traffic(shifted)  # the condition holds in the next evaluation
    (again,) = service.evaluate().values()
    assert "age" in again["drifted"]

    (alert,) = service.call("GET", "/monitoring/alerts", Role.VIEWER, params={"model": MODEL})[
        "items"
    ]
    assert alert["state"] == "open" and alert["features"] == ["age"] and alert["occurrences"] == 2
    assert alert["delivery"] == "delivered"
    assert len(hook.received) == 1  # one alert, not one per request or per evaluation
    headers, body = hook.received[0]
    assert verify(
        SECRET, headers[TIMESTAMP_HEADER.lower()], body, headers[SIGNATURE_HEADER.lower()]
    )
    assert json.loads(body)["alert"]["id"] == alert["id"]

    png = service.call(
        "GET",
        f"/models/{MODEL}/monitoring/report",
        Role.VIEWER,
        params={"version": 1, "format": "png"},
    )
    assert png.headers["content-type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    page = service.call(
        "GET", f"/models/{MODEL}/monitoring/report", Role.VIEWER, params={"version": 1}
    )
    assert "<tr class='drift'><td>age</td>" in page.text


def test_a_retraining_policy_starts_one_job_whose_version_names_the_alert(
    service: Service, hook: Hook, tmp_path: Path
) -> None:
    time.sleep(WINDOW_S + 0.2)
    service.traffic(churn.generate(400, 31))  # clean again: open alerts resolve
    service.evaluate()
    earlier = service.call("GET", "/monitoring/alerts", Role.VIEWER)["items"]
    assert all(a["state"] == "resolved" for a in earlier)

    retrain = {"spec": spec(experiment="churn-retrained"), "max_jobs": 1, "period_s": 3600}
    service.set_policy(window_s=WINDOW_S, cooldown_s=0, webhook_url=hook.url, retrain=retrain)
    time.sleep(WINDOW_S + 0.2)
    shifted = churn.generate(400, 41)
    shifted["age"] += 15
    for _ in range(3):  # drift holds, resolves never: still one job
        service.traffic(shifted)
        service.evaluate()
    alerts = service.call("GET", "/monitoring/alerts", Role.VIEWER, params={"state": "open"})[
        "items"
    ]
    (alert,) = alerts
    assert alert["retraining_job"] and alert["id"] not in {a["id"] for a in earlier}
    jobs = [
        j for j in service.call("GET", "/training", Role.VIEWER) if j["submitted_by"] == "monitor"
    ]
    assert [j["job_id"] for j in jobs] == [alert["retraining_job"]]

    job = service.wait_job(alert["retraining_job"])
    assert job["state"] == "succeeded", job
    version = service.call(
        "GET", f"/models/{MODEL}/versions/{job['registered']['version']}", Role.VIEWER
    )
    assert version["stage"] == "development"  # through the gates like any other
    assert version["lineage"]["training"]["trigger"]["alert_id"] == alert["id"]


def test_prometheus_has_the_predictions_the_drift_and_the_quality(service: Service) -> None:
    import ray

    row = churn.generate(1, 51)[list(churn.FEATURES)].to_dict(orient="list")
    answer = service.call("POST", "/predict", Role.VIEWER, json={"model": MODEL, "inputs": row})
    service.sent_requests += 1
    service.call("POST", "/feedback", json={"request_id": answer["request_id"], "outcome": 1.0})
    ports = [n["MetricsExportPort"] for n in ray.nodes() if n["Alive"]]
    deadline = time.monotonic() + 90
    counted, text, quality = 0.0, "", []
    while time.monotonic() < deadline:  # Ray exports metrics every few seconds
        text = "".join(httpx.get(f"http://127.0.0.1:{p}/metrics", timeout=10).text for p in ports)
        counted = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("ray_mlservice_predictions_total{") and f'model="{MODEL}"' in line
        )
        wanted = ("ray_mlservice_drift_psi{", "ray_mlservice_prediction_share{")
        quality = [
            line
            for line in text.splitlines()
            if line.startswith("ray_mlservice_feedback_outcomes{") and f'model="{MODEL}"' in line
        ]
        joined = any(float(line.rsplit(" ", 1)[1]) >= 1 for line in quality)  # feedback in
        if counted == service.sent_requests and all(w in text for w in wanted) and joined:
            break
        time.sleep(2)
    assert counted == service.sent_requests
    drift = [line for line in text.splitlines() if line.startswith("ray_mlservice_drift_psi{")]
    names = sorted({line.split("{")[0] for line in text.splitlines() if "mlservice" in line})
    assert any('feature="age"' in line and f'model="{MODEL}"' in line for line in drift), names
    shares = [
        line for line in text.splitlines() if line.startswith("ray_mlservice_prediction_share{")
    ]
    assert any(f'model="{MODEL}"' in line for line in shares), names
    assert any(float(line.rsplit(" ", 1)[1]) >= 1 for line in quality), quality
    view = service.call("GET", f"/models/{MODEL}/monitoring", Role.VIEWER)
    assert sum(v["quality"]["outcomes"] for v in view["variants"]) >= 1


def test_bad_policies_and_unknown_reports_are_clear_errors(service: Service) -> None:
    url = f"{BASE}/models/{MODEL}/monitoring/policy"
    engineer = service.tokens.header(Role.ENGINEER)
    cases = [
        ({"sample_rate": 2}, "sample_rate"),
        ({"window_s": 0}, "window_s"),
        ({"webhook_url": "not a url"}, "webhook_url"),
        ({"thresholds": {"ks_statistic": 3}}, "thresholds.ks_statistic"),
        ({"retrain": {"spec": {"trainer": "mlp_classifier"}}}, "retrain.spec"),
        ({"window": 60}, "window"),
        ({"webhook_url": "http://169.254.169.254/latest/meta-data/"}, "webhook_url"),
    ]
    for body, field_name in cases:
        response = service.http.put(url, json=body, headers=engineer)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        fields = [e["field"] for e in response.json()["errors"]]
        assert any(f.startswith(field_name) for f in fields), (field_name, fields)
    assert service.http.put(url, json={}).status_code == 401
    viewer = service.tokens.header(Role.VIEWER)
    assert service.http.put(url, json={}, headers=viewer).status_code == 403
    missing = service.http.get(
        f"{BASE}/models/{MODEL}/monitoring/report", params={"version": 99}, headers=viewer
    )
    assert missing.status_code == 404 and missing.json()["code"] == "drift_not_evaluated"
    bad_state = service.http.get(f"{BASE}/monitoring/alerts", params={"state": "x"}, headers=viewer)
    assert bad_state.status_code == 422


def test_monitoring_a_model_that_does_not_exist_is_404(service: Service) -> None:
    engineer = service.tokens.header(Role.ENGINEER)
    base = f"{BASE}/models/no-such-model/monitoring"
    answers = {
        "GET monitoring": service.http.get(base, headers=engineer),
        "GET policy": service.http.get(f"{base}/policy", headers=engineer),
        "PUT policy": service.http.put(f"{base}/policy", json={"window_s": 600}, headers=engineer),
        "POST evaluate": service.http.post(f"{base}/evaluate", headers=engineer),
    }
    for what, answer in answers.items():
        assert answer.status_code == 404, (what, answer.text)
        assert answer.json()["code"] == "model_not_found", (what, answer.text)
    # nothing was stored for it
    assert service.http.get(f"{BASE}/models/no-such-model", headers=engineer).status_code == 404


def test_killing_the_monitor_actor_loses_no_policy_or_alert_and_it_recovers(
    service: Service, hook: Hook
) -> None:
    """The monitor actor dies (SIGKILL through Ray): while Ray restarts it, monitoring
    answers at once (200, or 503 backend_unavailable), never hangs; afterwards the policy
    and the alerts written before are all there, and evaluation works again, with no
    restart of the service."""
    import ray

    service.set_policy(window_s=WINDOW_S, cooldown_s=0, webhook_url=hook.url)
    policy = service.call("GET", f"/models/{MODEL}/monitoring/policy", Role.VIEWER)
    alerts = service.call("GET", "/monitoring/alerts", Role.VIEWER)
    handle = ray.get_actor(service.monitor_actor, namespace="ml-service")
    ray.kill(handle, no_restart=False)

    answers: Counter[str] = Counter()
    deadline = time.monotonic() + 120
    while True:
        started = time.monotonic()
        answer = service.http.get(
            f"{BASE}/models/{MODEL}/monitoring/policy",
            headers=service.tokens.header(Role.VIEWER),
            timeout=60,
        )
        assert time.monotonic() - started < 30, "a monitoring call hung while it restarted"
        if answer.status_code == 503:
            assert answer.json()["code"] == "backend_unavailable", answer.text
        else:
            assert answer.status_code == 200, answer.text
        answers[str(answer.status_code)] += 1
        if answer.status_code == 200 and restarted(handle):
            break
        assert time.monotonic() < deadline, f"the monitor did not come back: {answers}"
        time.sleep(0.2)
    assert answer.json() == policy  # written before the kill, read back after it
    after = service.call("GET", "/monitoring/alerts", Role.VIEWER)
    assert after["items"] == alerts["items"]
    time.sleep(WINDOW_S + 0.2)  # a fresh window for the evaluation below
    service.traffic(churn.generate(400, 61))
    evaluated = service.evaluate()
    assert evaluated and all(d["window"]["rows"] > 0 for d in evaluated.values()), evaluated


def restarted(handle: Any) -> bool:
    """Whether the actor answers again (a call raced with its restart may fail)."""
    import ray

    try:
        return bool(ray.get(handle.ping.remote(), timeout=30))
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
        return False
