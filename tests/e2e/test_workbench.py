"""The service started as the README starts it (`scripts/serve`), used as its docs walk it:
first the training walkthrough of docs/training.md (Ray's own job CLI with the sample
config); then the ML Workbench in a real browser (Debian's Chromium driven by Playwright):
an engineer's day through the page, with traffic and feedback sent from the test, and a
viewer's tour. Every page is checked with axe-core (no serious or critical violation) and
saved as a screenshot (`build/workbench-screenshots/`, or $WORKBENCH_SCREENSHOTS).
One service for both: each start costs CI minutes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pytest

from app.core.access import Role
from app.samples import churn
from testkit.auth import Tokens
from testkit.service import ROOT, Service
from testkit.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

BASE = "/api/v1/ml"
CHROMIUM = Path(os.environ.get("ML_TEST_CHROMIUM", "/usr/bin/chromium"))
# Without the networking flags Chromium keeps trying to reach the internet (FACTS.md).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE = ROOT / "workbench" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = Path(os.environ.get("WORKBENCH_SCREENSHOTS", ROOT / "build" / "workbench-screenshots"))
FEATURES = list(churn.FEATURES)
PAGES = ["overview", "features", "training", "experiments", "registry", "deployments", "monitoring"]


class Day:
    def __init__(self, service: Service, tokens: Tokens) -> None:
        self.service, self.tokens = service, tokens
        self.http = httpx.Client(base_url=service.url + BASE, timeout=120)

    def ok(self, method: str, path: str, role: Role = Role.ENGINEER, **kw: Any) -> Any:
        response = self.http.request(method, path, headers=self.tokens.header(role), **kw)
        assert response.status_code < 300, (path, response.status_code, response.text)
        return response.json() if response.content else None

    def call(self, method: str, path: str, role: Role = Role.VIEWER, **kw: Any) -> httpx.Response:
        return self.http.request(method, path, headers=self.tokens.header(role), **kw)

    def predict(self, row: dict[str, Any], key: str) -> dict[str, Any]:
        body = {"model": "churn", "inputs": [row], "request_key": key}
        return dict(self.ok("POST", "/predict", Role.VIEWER, json=body))

    def deployment(self) -> dict[str, Any]:
        return dict(self.ok("GET", "/models/churn/deployment", Role.VIEWER))

    def served(self) -> int:
        return sum(v["requests"] for v in self.deployment()["variants"])

    def wait_served(self, count: int) -> None:
        """Until the traffic actor has counted `count` requests (with their references)."""
        wait_for(lambda: self.served() >= count, timeout_s=60, what=f"{count} requests counted")

    def variants(self) -> dict[str, dict[str, Any]]:
        return {v["name"]: v for v in self.deployment()["variants"]}

    def verdict(self) -> dict[str, Any]:
        return dict(self.deployment()["verdicts"][0])

    def stages(self) -> dict[int, str]:
        detail = self.ok("GET", "/models/churn", Role.VIEWER)
        return {v["version"]: v["stage"] for v in detail["versions"]}

    def gate_inputs(self, version: int, gate: str) -> dict[str, Any]:
        history = self.ok("GET", f"/models/churn/versions/{version}", Role.VIEWER)
        return dict(next(c for c in history["gate_results"] if c["gate"] == gate)["inputs"])

    def aliases(self) -> dict[str, int]:
        """MLflow's own view of the stages (its client, through /mlflow, with a token)."""
        os.environ["MLFLOW_TRACKING_TOKEN"] = self.tokens.by_role[Role.VIEWER]
        try:
            found = mlflow.MlflowClient(f"{self.service.url}/mlflow").get_registered_model("churn")
        finally:
            os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        return {alias: int(version) for alias, version in found.aliases.items()}


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: scripts/test installs Debian's chromium"
    assert AXE.exists(), f"{AXE} is missing: scripts/setup builds the workbench (npm ci)"
    assert (ROOT / "workbench" / "dist" / "index.html").exists(), "scripts/setup builds it"
    service = Service(tmp_path_factory.mktemp("workbench"))
    tokens = Tokens()
    service.start(
        {
            "ML_AUTH__TOKENS": json.dumps(tokens.entries()),
            "ML_SERVING__STATS_FLUSH_S": "0.2",
            "ML_SERVING__LIFECYCLE_TICK_S": "0.5",
            "ML_SERVING__DRAIN_WINDOW_S": "2",
            "ML_SERVING__AB_TEST__MIN_OUTCOMES": "20",  # a verdict's interval within minutes
        }
    )
    try:
        yield Day(service, tokens)
    finally:
        service.stop()


def dashboard_url(service: Service) -> str:
    """Where `serve run` says the Ray dashboard is."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", service.log())
    found = re.search(r"View the dashboard at (?:https?://)?([\w.\-]+:\d+)", plain)
    assert found, plain[-3000:]
    return f"http://{found.group(1)}"


@pytest.fixture(scope="module")
def readme_job(day: Day) -> tuple[subprocess.CompletedProcess[str], str]:
    """docs/training.md's command: the sample config submitted with Ray's job CLI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ML_", "RAY_"))}
    env.update(
        RAY_AUTH_MODE="token",  # as the README says: the local cluster uses token auth
        PATH=f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}",
    )
    submitted = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "ray"),
            "job",
            "submit",
            "--address",
            dashboard_url(day.service),
            "--working-dir",
            ".",
            "--",
            "python",
            "-m",
            "app.jobs.train",
            "--config",
            "configs/training/churn_mlp.yaml",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = submitted.stdout + submitted.stderr
    assert submitted.returncode == 0, output[-5000:]
    job_id = re.search(r"Job '([\w\-]+)' succeeded", output)
    assert job_id, output[-3000:]
    return submitted, job_id.group(1)


def top_class(scores: dict[str, float]) -> int:
    return int(max(scores, key=lambda k: scores[k]))


def test_the_readme_training_job_from_the_command_line(
    day: Day, readme_job: tuple[subprocess.CompletedProcess[str], str]
) -> None:
    submitted, job_id = readme_job
    output = submitted.stdout + submitted.stderr
    assert "registered churn version 1" in output, output[-5000:]
    job = day.ok("GET", f"/training/{job_id}", Role.VIEWER)
    assert job["state"] == "succeeded", job
    assert job["kind"] == "train"  # found through its MLflow run, though not submitted here
    assert job["progress"] == {"done": 5, "total": 5, "unit": "epochs"}
    assert job["registered"] == {"model": "churn", "version": 1}
    version = day.ok("GET", "/models/churn/versions/1", Role.VIEWER)
    assert version["stage"] == "development"
    assert version["lineage"]["training"] == {"trainer": "mlp_classifier", "num_workers": 2}
    metrics = job["metrics"]
    assert metrics["val_accuracy"] > metrics["baseline_accuracy"] + 0.03, metrics


@pytest.fixture(scope="module")
def browser(day: Day) -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Tab:
    """One signed-in browser context; it records every request the page makes."""

    def __init__(self, browser: Any, day: Day, role: Role, width: int = 1280) -> None:
        # bypass_csp: axe-core is injected as an inline script; the service's CSP itself is
        # checked in tests/unit/test_workbench.py, and requests are checked here by origin
        self.context = browser.new_context(
            viewport={"width": width, "height": 800}, bypass_csp=True
        )
        self.context.set_default_timeout(30_000)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.jobs: dict[int, str] = {}  # version -> the job that registered it
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.day = day
        self.page.goto(f"{day.service.url}/workbench/")
        self.page.get_by_label("Service token").fill(day.tokens.by_role[role])
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page.get_by_role("heading", name="Overview", level=1)).to_be_visible()

    def open(self, route: str) -> Any:
        self.page.goto(f"{self.day.service.url}/workbench/#/{route}")
        return self.page

    def axe(self) -> list[dict[str, Any]]:
        """axe-core's serious and critical violations on the page as it is now."""
        self.page.add_script_tag(path=str(AXE))
        found = self.page.evaluate(
            """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
                .map(v => ({id: v.id, impact: v.impact, help: v.help,
                            nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 3)}))"""
        )
        return [v for v in found if v["impact"] in ("serious", "critical")]

    def shot(self, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def submit_job(self, sample: str, refuse_first: bool = False) -> int:
        """Submit a sample config from the Training page and watch it finish; the version
        it registered."""
        page = self.open("training")
        page.get_by_label("Sample config").select_option(sample)
        spec = page.get_by_label("Job spec (JSON)")
        if refuse_first:
            good = spec.input_value()
            spec.fill(json.dumps({**json.loads(good), "scaling": {"num_workers": 0}}))
            page.get_by_role("button", name="Submit job").click()
            expect(page.get_by_role("alert")).to_contain_text("422")
            expect(page.locator(".field-message").first).to_contain_text("num_workers")
            spec.fill(good)
        page.get_by_role("button", name="Submit job").click()
        expect(page).to_have_url(re.compile(r"training\?job="))
        job_id = page.url.rsplit("job=", 1)[1]
        state = page.locator("[data-state]")
        expect(state).to_have_attribute("data-state", "succeeded", timeout=900_000)
        expect(page.locator("pre.log")).not_to_be_empty()
        registered = page.locator(".job-status dd").filter(has_text=re.compile(r"^churn version"))
        expect(registered).to_be_visible()
        version = int(registered.inner_text().rsplit(" ", 1)[1])
        self.jobs[version] = job_id
        return version

    def promote(
        self,
        version: int,
        stage: str,
        refused: tuple[str, ...] = (),
        may_refuse: bool = False,
    ) -> Any:
        """Promote from the Registry page. The gates' results ("passed: reason") by gate;
        with `refused`, the promotion must be refused by (at least) those gates; with
        `may_refuse`, whether it went through."""
        page = self.open("registry?model=churn")
        form = page.get_by_role("form", name="Promote a version")
        form.get_by_label("Version").fill(str(version))
        form.get_by_label("To stage").select_option(stage)
        form.get_by_role("button", name="Promote").click()
        done = page.get_by_text(f"Promoted v{version} to {stage}.")
        refusal = page.get_by_role("alert").filter(has_text="gates_failed")
        expect(done.or_(refusal)).to_be_visible(timeout=300_000)
        went = done.is_visible()
        if refused:
            assert not went, f"v{version} to {stage} was not refused"
            table = page.get_by_role("table", name="Gates of the refused promotion")
            for gate in refused:
                expect(table.get_by_role("row").filter(has_text=gate)).to_contain_text("refused")
            return self.gates(table)
        if may_refuse:
            return went
        assert went, page.get_by_role("alert").inner_text()
        return self.gates(page.get_by_role("table", name="Gates of this promotion"))

    @staticmethod
    def gates(table: Any) -> dict[str, str]:
        found = {}
        for row in table.get_by_role("row").all()[1:]:
            gate, result, reason = (c.inner_text() for c in row.get_by_role("cell").all())
            found[gate] = f"{result}: {reason}"
        return found

    def approve(self, version: int) -> None:
        page = self.open("registry?model=churn")
        form = page.get_by_role("form", name="Approve a version")
        form.get_by_label("Version").fill(str(version))
        form.get_by_role("button", name="Approve for production").click()
        expect(page.get_by_text(f"Approved v{version}.")).to_be_visible()
        expect(page.get_by_role("table", name="Approvals")).to_contain_text(f"v{version}")

    def deploy(self, strategy: str, version: int | None = None, variants: str = "") -> None:
        page = self.open("deployments?model=churn")
        form = page.get_by_role("form", name="Deploy")
        form.get_by_label("Strategy").select_option(strategy)
        if version is not None:
            form.get_by_label("Version", exact=True).fill(str(version))
        if variants:
            form.get_by_label("A/B variants").fill(variants)
        form.get_by_role("button", name="Deploy").click()
        routing = page.get_by_role("table", name="Routing table and live statistics")
        expect(page.get_by_text(f"Strategy {strategy},")).to_be_visible(timeout=120_000)
        expect(routing).to_be_visible()

    def foreign_requests(self) -> list[str]:
        origin = self.day.service.url
        return [u for u in self.requests if not u.startswith((origin + "/", "data:"))]


def customers(seed: int, count: int, shift: float = 0.0) -> tuple[list[dict[str, Any]], list[int]]:
    frame = churn.generate(count, seed)
    rows = [
        {name: float(value) + shift for name, value in row.items()}
        for row in frame[FEATURES].to_dict(orient="records")
    ]
    return rows, [int(y) for y in frame[churn.TARGET]]


def test_an_engineers_day_in_the_workbench(
    day: Day, browser: Any, readme_job: tuple[subprocess.CompletedProcess[str], str]
) -> None:
    """docs/registry.md's walk from a first model to its successor in production, done in
    the page: every promotion, approval and deployment is a click; MLflow's aliases match
    the stages at every step; the old version is archived by the controller once drained."""
    tab = Tab(browser, day, Role.ADMIN)
    page = tab.page

    # Features: the sample views were never materialized; materialize them from the page
    tab.open("features")
    views = page.get_by_role("table", name=re.compile("^Feature views"))
    expect(views.get_by_role("row").filter(has_text="customer_stats")).to_contain_text("never")
    page.get_by_role("button", name="Materialize now").click()
    expect(page.get_by_role("status")).to_contain_text("Materialized", timeout=120_000)
    expect(views.get_by_role("row").filter(has_text="customer_stats")).to_contain_text("fresh")

    # Training: a refused spec shows the server's field error; then the small first model
    # (version 1 came from the command line: this is version 2)
    first = tab.submit_job("churn_baseline", refuse_first=True)
    assert first == 2

    # Experiments: the command line's run and the page's, side by side
    tab.open("experiments")
    page.get_by_role("link", name="churn-training").click()
    boxes = page.get_by_role("checkbox")
    expect(boxes).to_have_count(2)
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.get_by_role("button", name="Compare selected").click()
    differing = page.get_by_role("table", name="Parameters (differing ones highlighted)")
    expect(differing.locator("mark").filter(has_text="epochs")).to_be_visible()
    expect(page.locator(".charts figure canvas").first).to_be_visible()

    # Registry: to staging; production is refused by its gates, reasons shown; approve
    tab.promote(first, "staging")
    assert day.aliases() == {"staging": first}
    tab.promote(first, "production", refused=("manual_approval", "integration_checks"))
    tab.approve(first)

    # Deployments: the first version deployed; its requests are the integration evidence
    tab.deploy(strategy="replace", version=first)
    rows, truth = customers(seed=77, count=4000)
    sent = 0
    while not tab.promote(first, "production", may_refuse=True):
        for row in rows[sent : sent + 25]:  # the integration check's requests
            body = {"model": "churn", "inputs": [row]}
            assert day.call("POST", "/predict", json=body).status_code in (200, 404)
        sent += 25
        assert sent < 1000, "the first version never passed its production gates"
    assert day.stages()[first] == "production" and day.aliases() == {"production": first}

    # integers for double features are served; a wrong number of features is the
    # client's 422 naming it, never the version's error
    whole = dict.fromkeys(FEATURES, 3)
    counted = day.served()
    assert day.call("POST", "/predict", json={"model": "churn", "inputs": [whole]}).is_success
    day.wait_served(counted + 1)
    short = day.call("POST", "/predict", json={"model": "churn", "inputs": [[1, 2, 3]]})
    assert short.status_code == 422 and short.json()["errors"][0]["field"] == "inputs[0]"
    assert day.call("POST", "/predict", json={"model": "churn", "inputs": [whole]}).is_success
    day.wait_served(counted + 2)
    assert day.variants()[f"v{first}"]["errors"] == 0

    # Tuning from the page: its trials as a table and a chart; the best trial staged under
    # the default policy (evaluation metrics compared, bookkeeping ones not)
    tuned = tab.submit_job("churn_tune")
    expect(page.get_by_role("table", name="Trials").get_by_role("row")).to_have_count(7)
    expect(page.get_by_role("img", name="Trials: val_loss")).to_be_visible()
    checks = tab.promote(tuned, "staging")
    assert checks["metrics_baseline"].startswith("passed"), checks
    inputs = day.gate_inputs(tuned, "metrics_baseline")
    assert set(inputs["evaluation_metrics"]) == {"val_loss", "val_accuracy"}, inputs
    assert day.aliases() == {"production": first, "staging": tuned}

    # A/B from the page; traffic and label feedback from the test, until the verdict is
    # significant; its interval changes with the evidence
    tab.deploy(strategy="ab", variants=f"{first}:50, {tuned}:50")
    verdicts = page.get_by_role("table", name="A/B verdicts")
    interval = verdicts.get_by_role("row").nth(1).get_by_role("cell").nth(4)
    status = verdicts.get_by_role("row").nth(1).get_by_role("cell").nth(2)
    right: dict[str, list[bool]] = {}
    intervals: list[str] = []
    for start in range(sent, len(rows), 200):
        counted = day.served()
        items = []
        for i in range(start, start + 200):
            answer = day.predict(rows[i], f"customer-{i}")
            right.setdefault(answer["variant"], []).append(
                top_class(answer["predictions"][0]) == truth[i]
            )
            items.append({"request_id": answer["request_id"], "label": truth[i]})
        day.wait_served(counted + 200)  # the references reached the traffic actor
        day.ok("POST", "/feedback", json={"items": items})
        verdict = day.verdict()
        expect(status).to_have_text(verdict["status"], timeout=30_000)
        if verdict["confidence_interval"]:
            expect(interval).to_have_text(re.compile(r"^\[.+\]$"))
            if intervals:
                expect(interval).not_to_have_text(intervals[-1], timeout=30_000)
            intervals.append(interval.inner_text())
        if verdict["status"] == "winner" and len(intervals) >= 2:
            break
    assert verdict["status"] == "winner" and verdict["winner"] == f"v{tuned}", verdict
    assert len(set(intervals)) >= 2, intervals
    expect(page.get_by_role("img", name="A/B effect with its confidence interval")).to_be_visible()
    quality = {n: v["quality"] for n, v in day.variants().items() if n in right}
    for name, flags in right.items():  # each arm's true accuracy on these labels
        assert quality[name] == pytest.approx(np.mean(flags)), (name, quality)

    # through every gate to production; the first version drains and is archived
    tab.approve(tuned)
    checks = tab.promote(tuned, "production")
    assert all(result.startswith("passed") for result in checks.values()), checks
    assert day.aliases() == {"production": tuned}
    weights = {name: v["weight"] for name, v in day.variants().items()}
    assert weights[f"v{tuned}"] == 100 and weights[f"v{first}"] == 0
    wait_for(
        lambda: day.stages()[first] == "archived",
        timeout_s=60,
        what="the first version archived once drained",
    )
    assert day.stages() == {1: "development", first: "archived", tuned: "production"}
    assert day.ok("GET", "/models/churn", Role.VIEWER)["policy_source"] == "default"
    tab.open("registry?model=churn")
    expect(page.get_by_role("list", name="Audit timeline")).to_contain_text("stage_changed")

    # Monitoring: shifted traffic, a drift alert with its histograms
    day.ok(
        "PUT",
        "/models/churn/monitoring/policy",
        json={"window_s": 3600, "cooldown_s": 0, "sample_rate": 1.0},
    )
    shifted, _ = customers(seed=8, count=300, shift=25.0)
    for i, row in enumerate(shifted):
        day.predict(row, f"shifted-{i}")
    tab.open("monitoring?model=churn")
    deadline = time.monotonic() + 180
    open_alerts = page.get_by_role("table", name="Open alerts")
    while not open_alerts.is_visible():
        assert time.monotonic() < deadline, page.locator("main").inner_text()[-2000:]
        # the page evaluates, then reads the model's monitoring again and re-renders
        with page.expect_response(
            lambda r: r.url.endswith("/models/churn/monitoring") and r.request.method == "GET",
            timeout=120_000,
        ):
            page.get_by_role("button", name="Evaluate drift now").click()
    expect(open_alerts).to_contain_text("open")
    expect(page.get_by_role("img", name="reference against current").first).to_be_visible()

    # every page: no serious or critical accessibility violation; a screenshot of each
    routes = {
        "overview": "overview",
        "features": "features",
        "training": f"training?job={tab.jobs[tuned]}",
        "experiments": "experiments",
        "registry": "registry?model=churn",
        "deployments": "deployments?model=churn",
        "monitoring": "monitoring?model=churn",
    }
    violations = {}
    for number, (name, route) in enumerate(routes.items(), start=1):
        tab.open(route)
        expect(page.get_by_role("heading", level=1)).to_have_text(name.capitalize())
        page.wait_for_load_state("networkidle")
        violations[name] = tab.axe()
        tab.shot(f"{number:02d}-{name}")
    assert not any(violations.values()), violations
    narrow = Tab(browser, day, Role.ADMIN, width=420)
    narrow.open("deployments?model=churn")
    routing = narrow.page.get_by_role("table", name="Routing table and live statistics")
    expect(routing).to_be_visible()
    narrow.shot("08-deployments-narrow")
    assert not tab.foreign_requests() and not narrow.foreign_requests()


def test_a_viewer_sees_every_page_and_no_enabled_write_control(day: Day, browser: Any) -> None:
    tab = Tab(browser, day, Role.VIEWER)
    page = tab.page
    routes = [
        "overview",
        "features",
        "training",
        "experiments",
        "registry?model=churn",
        "deployments?model=churn",
        "monitoring?model=churn",
    ]
    writes = 0
    for route in routes:
        tab.open(route)
        page.wait_for_load_state("networkidle")
        expect(page.get_by_role("alert")).to_have_count(0)
        controls = page.locator("[data-write]")
        writes += controls.count()
        assert page.locator("[data-write]:enabled").count() == 0, route
    assert writes >= 6  # materialize, submit, promote, approve, deploy, stop, evaluate
    assert tab.axe() == []
    tab.shot("09-monitoring-viewer")
    assert not tab.foreign_requests()
