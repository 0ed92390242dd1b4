"""The README's first command, end to end: start, use, stop, start again."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import stat
import subprocess
import tempfile
import threading
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
from testkit import contract
from testkit.auth import Tokens
from testkit.models import log_model_run
from testkit.oidc import Issuer
from testkit.service import Service
from testkit.waiting import wait_for

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
def issuer() -> Iterator[Issuer]:
    """An OIDC issuer whose JWKS the service fetches over loopback."""
    issuer = Issuer()
    yield issuer
    issuer.close()


@pytest.fixture(scope="module")
def second_start(
    service: Service, first_start: dict[str, str], registered: dict[str, object], issuer: Issuer
) -> Tokens:
    """Stop, then start again with configured tokens for each role and an OIDC issuer."""
    service.stop()
    tokens = Tokens()
    service.start(
        {
            "ML_AUTH__TOKENS": json.dumps(tokens.entries()),
            "ML_AUTH__OIDC": json.dumps(issuer.settings(role_map={"ml-engineers": "engineer"})),
        }
    )
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


def test_a_url_with_raw_bytes_is_a_problem_with_a_request_id(
    service: Service, second_start: Tokens
) -> None:
    """Unencoded UTF-8 in a URL: HAProxy used to answer its own HTML 400, then the API's
    server a text/plain one; the ingress answers problem+json with an x-request-id."""
    raw = f"GET {BASE}/models?page_token=caf\u00e9 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    raw += "Connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock:
        sock.sendall(raw.encode("utf-8"))
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert lines[0].startswith("HTTP/1.1 400"), answer[:500]
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["code"] == "malformed_request" and problem["status"] == 400
    assert problem["request_id"] == headers["x-request-id"] != ""


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
    """Two model server replicas; one is killed (SIGKILL) while 8 clients predict: after
    20 answers, and the load goes on until 100 more came (counts, not seconds: a slow
    machine answers fewer per second)."""
    viewer = second_start.header(Role.VIEWER)
    statuses: Counter[int] = Counter()
    stop = threading.Event()

    def client(index: int) -> None:
        with httpx.Client(base_url=service.url, timeout=60, headers=viewer) as http:
            i = 0
            while not stop.is_set():
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
        clients = [pool.submit(client, index) for index in range(8)]
        try:
            wait_for(lambda: sum(statuses.values()) >= 20, "20 answers before the kill", 120)
            os.kill(int(replicas[0]), signal.SIGKILL)
            before = sum(statuses.values())
            wait_for(
                lambda: sum(statuses.values()) >= before + 100, "100 answers after the kill", 300
            )
        finally:
            stop.set()
        for future in clients:
            future.result()
    total = sum(statuses.values())
    failed = total - statuses[200]
    logging.getLogger(__name__).warning(
        "replica kill under load: %d requests, %d failed (%s)", total, failed, dict(statuses)
    )
    assert total >= 120
    assert failed / total <= 0.02, dict(statuses)


def test_killing_the_api_replica_under_load(
    service: Service, registered: dict[str, Any], second_start: Tokens
) -> None:
    """The API's (Ingress) replica is killed (SIGKILL) while 8 clients predict: every
    answer meanwhile is 200 or the ingress's 503 `backend_unavailable` (problem+json;
    Serve's HAProxy configuration alone gives a bare 500), never another status or a hang.
    Connections the ingress closes without an answer (HAProxy reloads its configuration
    when the replica set changes) happen only around the kill; Serve starts a new replica
    and the load recovers."""
    viewer = second_start.header(Role.VIEWER)
    statuses: Counter[int] = Counter()
    unexpected: list[str] = []
    dropped: list[float] = []  # when a connection closed without an answer
    moments = {"failure": 0.0}
    stop = threading.Event()
    body = {"model": "churn", "inputs": [[0.1, 0.2, 0.3, 0.4]]}

    def client(index: int) -> None:
        with httpx.Client(base_url=service.url, timeout=60, headers=viewer) as http:
            while not stop.is_set():
                try:
                    answer = http.post(f"{BASE}/predict", json={**body, "request_key": f"{index}"})
                except (httpx.RemoteProtocolError, httpx.ConnectError):
                    dropped.append(time.monotonic())
                    moments["failure"] = time.monotonic()
                    continue
                except httpx.HTTPError as exc:  # a hang ends here, at the client's timeout
                    unexpected.append(type(exc).__name__)
                    continue
                statuses[answer.status_code] += 1
                if answer.status_code == 200:
                    continue
                moments["failure"] = time.monotonic()
                problem = answer.headers.get("content-type", "").startswith(
                    "application/problem+json"
                )
                if answer.status_code != 503 or not problem:
                    unexpected.append(f"{answer.status_code}: {answer.text[:200]}")
                elif answer.json()["code"] != "backend_unavailable":
                    unexpected.append(answer.text[:200])

    replicas = subprocess.run(
        ["pgrep", "-f", "ServeReplica:ml:Ingress"], capture_output=True, text=True
    ).stdout.split()
    assert replicas, "no API replica found"
    with ThreadPoolExecutor(8) as pool:
        for index in range(8):
            pool.submit(client, index)
        deadline = time.monotonic() + 120
        while statuses[200] < 50:
            assert time.monotonic() < deadline and not unexpected, (statuses, unexpected)
            time.sleep(0.2)
        os.kill(int(replicas[0]), signal.SIGKILL)
        killed = time.monotonic()
        served_at_kill = statuses[200]
        deadline = killed + 300
        while not (
            statuses[200] - served_at_kill >= 100 and time.monotonic() - moments["failure"] > 5
        ):
            assert time.monotonic() < deadline, (statuses, unexpected)
            time.sleep(0.2)
        stop.set()
    logging.getLogger(__name__).warning(
        "API replica kill under load: %s, %d connections closed without an answer; "
        "failures for %.1f s after the kill",
        dict(statuses),
        len(dropped),
        moments["failure"] - killed,
    )
    assert not unexpected, unexpected
    assert set(statuses) <= {200, 503}, dict(statuses)
    assert all(killed <= t <= killed + 60 for t in dropped), [t - killed for t in dropped]
    now = subprocess.run(
        ["pgrep", "-f", "ServeReplica:ml:Ingress"], capture_output=True, text=True
    ).stdout.split()
    assert now and replicas[0] not in now, (replicas, now)  # Serve started another


def test_twenty_concurrent_deploys_of_one_model_one_wins(
    service: Service, registered: dict[str, Any], second_start: Tokens
) -> None:
    """20 canary deploys of one model at once: one starts the rollout, 19 are refused with
    409 `rollout_in_progress`, and the table is the first step of that one rollout."""
    engineer = second_start.header(Role.ENGINEER)
    first, second = registered["versions"][:2]
    url = f"{BASE}/models/churn/deploy"
    with httpx.Client(base_url=service.url, timeout=120, headers=engineer) as http:
        replaced = http.post(url, json={"strategy": "replace", "version": first})
        assert replaced.status_code == 200, replaced.text
        revision = replaced.json()["revision"]
        canary = {"strategy": "canary", "version": second, "steps": [10, 100], "bake_time_s": 3600}

        def deploy(_: int) -> httpx.Response:
            with httpx.Client(base_url=service.url, timeout=120, headers=engineer) as own:
                return own.post(url, json=canary)

        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(deploy, range(20)))
        codes = Counter(a.status_code for a in answers)
        logging.getLogger(__name__).warning("20 concurrent deploys: %s", dict(codes))
        assert codes == {200: 1, 409: 19}, [a.text for a in answers]
        refusals = {a.json()["code"] for a in answers if a.status_code == 409}
        assert refusals == {"rollout_in_progress"}
        view = http.get(f"{BASE}/models/churn/deployment").json()
        assert view["revision"] == revision + 1  # one change, not twenty
        assert view["rollout"]["phase"] == "progressing"
        weights = sorted((v["version"], v["weight"]) for v in view["variants"])
        assert weights == [(first, 90.0), (second, 10.0)]
        assert http.delete(f"{BASE}/models/churn/deployment").status_code in (200, 204)


def test_the_authorization_matrix_holds_for_every_operation(
    service: Service,
    second_start: Tokens,
    issuer: Issuer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every operation of the OpenAPI document, and MLflow's routes under /mlflow, as every
    kind of caller: the documented status (401, 403, or past the guard)."""
    admin = second_start.header(Role.ADMIN)
    with httpx.Client(base_url=service.url, timeout=60) as http:
        spec = http.get("/openapi.json").json()
        created = http.post(
            f"{BASE}/auth/tokens", json={"name": "to-revoke", "roles": ["admin"]}, headers=admin
        ).json()
        assert http.delete(f"{BASE}/auth/tokens/{created['id']}", headers=admin).status_code == 200
        now = int(time.time())
        headers: dict[str, dict[str, str]] = {
            "anonymous": {},
            **{role.value: second_start.header(role) for role in Role},
            "oidc_engineer": _bearer(issuer.token(roles=["ml-engineers"])),
            "expired": _bearer(issuer.token(roles=["admin"], iat=now - 600, exp=now - 300)),
            "revoked": _bearer(created["token"]),
            "wrong_issuer": _bearer(issuer.token(roles=["admin"], iss="https://elsewhere.example")),
        }
        roles = {**{role.value: role for role in Role}, "oidc_engineer": Role.ENGINEER}
        SECRETS_USED.extend(h["Authorization"].split(" ", 1)[1] for h in headers.values() if h)
        ops = [*contract.operations(spec), *MLFLOW_ROUTES]
        calls, mismatches = contract.check(http, ops, headers, roles)
    with capsys.disabled():
        print(  # noqa: T201 - the number CI's output must show
            f"\nauthorization matrix: {len(ops)} operations x {len(headers)} callers = "
            f"{calls} calls, {len(mismatches)} mismatches"
        )
    assert len(ops) >= 55 and calls == len(ops) * len(headers)
    assert mismatches == []


MLFLOW_API = "/mlflow/api/2.0/mlflow"
MLFLOW_ROUTES = [  # MLflow's own routes behind the service's tokens (not in our document)
    contract.Operation("GET", "/mlflow/", None, None),
    contract.Operation("GET", "/mlflow/health", None, None),
    contract.Operation("GET", f"{MLFLOW_API}/experiments/search?max_results=5", Role.VIEWER, None),
    contract.Operation("POST", f"{MLFLOW_API}/experiments/search", Role.VIEWER, None, {}),
    contract.Operation("GET", f"{MLFLOW_API}/registered-models/search", Role.VIEWER, None),
    contract.Operation("GET", "/mlflow/ajax-api/2.0/mlflow/experiments/search", Role.VIEWER, None),
    contract.Operation("POST", f"{MLFLOW_API}/runs/search", Role.VIEWER, None, {}),
    contract.Operation("POST", f"{MLFLOW_API}/runs/delete", Role.ENGINEER, None, {"run_id": "0"}),
    contract.Operation(
        "POST", f"{MLFLOW_API}/registered-models/delete", Role.ENGINEER, None, {"name": "nothing"}
    ),
]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_fuzz_finds_no_failure(
    service: Service,
    first_start: dict[str, str],
    registered: dict[str, Any],
    second_start: Tokens,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Schemathesis over every operation as an admin (positive and negative cases), half
    of them on the objects the tests above made (the model churn, its versions, an
    experiment and a run): no 5xx, every status and content type documented, every body
    as its schema says."""
    admin = second_start.by_role[Role.ADMIN]
    with contract.jobs_cancelled(service.url, admin) as cancelled:
        result = contract.fuzz(
            service.url,
            admin,
            tmp_path,
            max_examples=FUZZ_EXAMPLES,
            known={
                "model_id": ["churn"],
                "version": registered["versions"],
                "experiment_id": [first_start["experiment_id"]],
                "run_id": [first_start["run_id"]],
            },
        )
    summary = result.output[result.output.rfind("Test cases:") :].strip()
    with capsys.disabled():
        print(  # noqa: T201 - the numbers CI's output must show
            f"\nschemathesis: {result.generated} cases, {result.failures} with failures, "
            f"{result.errored} errored (exit {result.exit_code}); {len(cancelled)} training "
            f"jobs it submitted were cancelled\n{summary}"
        )
    assert result.generated >= 1000, result.output[-5000:]
    assert (result.exit_code, result.failures, result.errored) == (0, 0, 0), result.output[-20000:]


FUZZ_EXAMPLES = 30  # per operation in the fuzzing phase; the examples phase adds more


SECRETS_USED: list[str] = []  # tokens the tests above handed out or sent


def test_no_token_or_secret_appears_in_the_logs(
    service: Service, first_start: dict[str, str], second_start: Tokens
) -> None:
    """After a whole day on the service (two starts, every operation, the fuzz): none of
    the tokens it used is in the service's output or in its Ray session's log files."""
    secrets = {first_start["token"], *second_start.by_role.values(), *SECRETS_USED}
    logs = {"serve.log": service.log()}
    session = Path(tempfile.gettempdir()) / "ray" / "session_latest" / "logs"
    for path in session.rglob("*") if session.is_dir() else ():
        if path.is_file() and path.stat().st_size < 200_000_000:
            logs[str(path)] = path.read_text(errors="replace")
    assert len(logs) > 10 and len(secrets) >= 9, (len(logs), len(secrets))
    leaks = [(name, s[:12]) for name, text in logs.items() for s in secrets if s in text]
    logging.getLogger(__name__).warning(
        "%d secrets searched in %d log files: %d found", len(secrets), len(logs), len(leaks)
    )
    assert leaks == []
