"""Decision scenarios driven through the running service over HTTP, with real registered
models whose behaviour is known (`testkit.models.ScoredModel`: class scores, a share of
rows it fails on, extra latency) and seeded traffic of known ground truth.

The benchmark (`benchmarks/decisions.py`) runs them many times and prints rates against
targets; the e2e tests run each once and assert the verdicts. Nothing here calls the
core's decision functions: the service decides, the scenario only sends traffic,
feedback and looks.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from testkit.models import log_scored_run

BASE = "/api/v1/ml"


@dataclass
class Harness:
    """The service, seen by a client with an engineer's and a viewer's token.

    Args:
        http: a client on the service's URL with an engineer's token.
        viewer: a viewer's headers (predictions and reads).
        approver: an approver's headers.
        tracking_uri, artifact_root: where the scenario logs its models (the service's
            MLflow store).
    """

    http: httpx.Client
    viewer: dict[str, str]
    approver: dict[str, str]
    tracking_uri: str
    artifact_root: str
    clients: int = 4
    counters: dict[str, int] = field(default_factory=dict)

    def version(self, model: str, stage: str = "staging", **behaviour: Any) -> int:
        """Log a `ScoredModel` with `behaviour`, register it and promote it to `stage`."""
        run = log_scored_run(self.tracking_uri, self.artifact_root, "decisions", **behaviour)
        version = int(
            self._ok("POST", "/models", json={"name": model, "run_id": run.run_id})["version"]
        )
        if stage != "development":
            self._ok("POST", f"/models/{model}/promote", json={"version": version, "to": stage})
        return version

    def deploy(self, model: str, **body: Any) -> dict[str, Any]:
        """Deploy, then wait until the ingress routes by the new table."""
        view = dict(self._ok("POST", f"/models/{model}/deploy", json=body))
        wanted = {v["name"] for v in view["variants"] if v["weight"] > 0}
        deadline = time.monotonic() + 30
        seen: set[str] = set()
        while not wanted <= seen:
            answer = self.predict(model, rows(np.random.default_rng(0), 1), key=None)
            seen.add(answer.get("variant", ""))
            if time.monotonic() > deadline:
                break
        return view

    def predict(self, model: str, inputs: Any, key: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "inputs": inputs}
        if key is not None:
            body["request_key"] = key
        response = self.http.post(f"{BASE}/predict", json=body, headers=self.viewer)
        self.counters[str(response.status_code)] = (
            self.counters.get(str(response.status_code), 0) + 1
        )
        return (
            dict(response.json())
            if response.status_code == 200
            else {"status": response.status_code}
        )

    def predict_many(
        self, model: str, rows_: list[dict[str, Any]], keys: list[str | None]
    ) -> list[dict[str, Any]]:
        """One request per row, `clients` at a time; the answers in order."""
        with ThreadPoolExecutor(self.clients) as pool:
            return list(
                pool.map(
                    lambda pair: self.predict(model, [pair[0]], pair[1]),
                    zip(rows_, keys, strict=True),
                )
            )

    def feedback(self, items: list[dict[str, Any]]) -> None:
        for start in range(0, len(items), 500):
            self._ok("POST", "/feedback", json={"items": items[start : start + 500]})

    def view(self, model: str) -> dict[str, Any]:
        return dict(self._ok("GET", f"/models/{model}/deployment", headers=self.viewer))

    def _ok(self, method: str, path: str, **kw: Any) -> Any:
        response = self.http.request(method, BASE + path, **kw)
        if response.status_code >= 300:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None


def rows(rng: np.random.Generator, count: int, shift: float = 0.0) -> list[dict[str, Any]]:
    """Feature rows as a JSON client sends them (tenure >= 2: rows a flaky model may fail;
    support calls as whole numbers, for a double column)."""
    tenure = rng.uniform(2, 10, count) + shift
    charges = rng.uniform(0, 3, count)
    calls = rng.integers(0, 5, count)
    return [
        {"tenure_months": float(t), "monthly_charges": float(c), "support_calls": int(s)}
        for t, c, s in zip(tenure, charges, calls, strict=True)
    ]


def top_class(prediction: dict[str, float]) -> int:
    return int(max(prediction, key=lambda k: prediction[k]))


@dataclass(frozen=True)
class AbRun:
    """One A/B experiment: the first winner named while looking (None: none), the
    outcomes per arm when it was named (or at the end), and the last verdict."""

    winner: int | None
    outcomes: int
    verdict: dict[str, Any]


def ab_run(
    harness: Harness,
    model: str,
    arms: tuple[int, int],
    accuracy: dict[int, float],
    rng: np.random.Generator,
    *,
    max_outcomes: int,
    look_every: int = 50,
) -> AbRun:
    """A 50/50 A/B test of `arms` with label feedback: each request's label is its
    predicted class with probability `accuracy[version]` (the arm's true accuracy); the
    verdict is looked at after every `look_every` requests per arm."""
    harness.deploy(model, strategy="ab", variants=[{"version": v, "weight": 50} for v in arms])
    served = 0
    verdict: dict[str, Any] = {}
    while served < 2 * max_outcomes:
        items = []
        batch = rows(rng, 2 * look_every)
        keys: list[str | None] = [f"k{rng.integers(1 << 62)}" for _ in batch]
        for answer in harness.predict_many(model, batch, keys):
            if "request_id" not in answer:
                continue
            predicted = top_class(answer["predictions"][0])
            right = rng.random() < accuracy[answer["version"]]
            items.append(
                {"request_id": answer["request_id"], "label": predicted if right else 1 - predicted}
            )
        served += len(items)
        harness.feedback(items)
        verdict = _verdict(harness, model, served)
        if verdict.get("status") == "winner":
            winner = next(
                v["version"]
                for v in harness.view(model)["variants"]
                if v["name"] == verdict["winner"]
            )
            return AbRun(
                int(winner),
                min(verdict["baseline_outcomes"], verdict["candidate_outcomes"]),
                verdict,
            )
    return AbRun(None, served // 2, verdict)


def _verdict(harness: Harness, model: str, served: int) -> dict[str, Any]:
    """The verdict once the feedback of `served` requests is joined (a moment's wait)."""
    deadline = time.monotonic() + 10
    while True:
        found = harness.view(model)["verdicts"]
        verdict = dict(found[0]) if found else {}
        joined = verdict.get("baseline_outcomes", 0) + verdict.get("candidate_outcomes", 0)
        if joined >= served * 0.98 or time.monotonic() > deadline:
            return verdict
        time.sleep(0.2)


def srm_run(
    harness: Harness, model: str, arms: tuple[int, int], requests: int, share: float
) -> dict[str, Any]:
    """A 50/50 A/B test whose assignments are skewed to `share` for the first arm, as a
    client that retries one arm's requests would skew them; the verdict afterwards."""
    harness.deploy(model, strategy="ab", variants=[{"version": v, "weight": 50} for v in arms])
    rng = np.random.default_rng(0)
    counts = {arms[0]: 0, arms[1]: 0}
    first_keys: list[str] = []
    targets = {arms[0]: round(requests * share), arms[1]: requests - round(requests * share)}
    while counts[arms[1]] < targets[arms[1]]:
        key = f"u{rng.integers(1 << 62)}"
        answer = harness.predict(model, rows(rng, 1), key=key)
        version = answer.get("version")
        if version in counts:
            counts[version] += 1
            if version == arms[0]:
                first_keys.append(key)
    for i in range(targets[arms[0]] - counts[arms[0]]):  # the retried ones, on their arm
        harness.predict(model, rows(rng, 1), key=first_keys[i % len(first_keys)])
    time.sleep(1.5)  # the last stats flush
    return dict(harness.view(model)["verdicts"][0])


@dataclass(frozen=True)
class CanaryRun:
    """One canary rollout: how it ended, after how many canary requests, and why."""

    phase: str
    canary_requests: int
    reason: str


def canary_run(
    harness: Harness,
    model: str,
    baseline: int,
    canary: int,
    rng: np.random.Generator,
    *,
    accuracy: dict[int, float] | None = None,
    steps: tuple[float, ...] = (50, 100),
    bake_time_s: float = 1.0,
    min_requests: int = 60,
    max_requests: int = 6000,
) -> CanaryRun:
    """Replace with `baseline`, then a canary of `canary`; traffic (and, with `accuracy`,
    label feedback) until the rollout completes or is rolled back."""
    harness.deploy(model, strategy="replace", version=baseline)
    harness.deploy(
        model,
        strategy="canary",
        version=canary,
        steps=list(steps),
        bake_time_s=bake_time_s,
        min_requests=min_requests,
    )
    # a variant's counts are cumulative over the version's deploys: this run's start
    before = {v["name"]: int(v["requests"]) for v in harness.view(model)["variants"]}
    sent = 0
    while sent < max_requests:
        items = []
        batch = rows(rng, 20)
        for answer in harness.predict_many(model, batch, [None] * len(batch)):
            sent += 1
            if accuracy and "request_id" in answer:
                predicted = top_class(answer["predictions"][0])
                right = rng.random() < accuracy[answer["version"]]
                items.append(
                    {
                        "request_id": answer["request_id"],
                        "label": predicted if right else 1 - predicted,
                    }
                )
        if items:
            harness.feedback(items)
        view = harness.view(model)
        rollout = view.get("rollout") or {}
        if rollout.get("phase") in ("completed", "rolled_back"):
            canary_name = rollout["canary"]
            requests = next(v["requests"] for v in view["variants"] if v["name"] == canary_name)
            requests = int(requests) - before.get(canary_name, 0)
            return CanaryRun(rollout["phase"], requests, str(rollout.get("reason", "")))
    return CanaryRun("progressing", sent, "")


def drift_evaluations(
    harness: Harness,
    model: str,
    rng: np.random.Generator,
    *,
    windows: int,
    rows_per_window: int,
    window_s: float,
    alpha: float = 0.01,
    shift: float = 0.0,
) -> list[list[str]]:
    """`windows` evaluations of fresh windows of traffic (tenure shifted by `shift`),
    each the features found drifted (the model's monitoring policy is set to windows of
    `window_s` and a test at `alpha`; the deployed version has a reference)."""
    policy = {
        "window_s": window_s,
        "thresholds": {"alpha": alpha, "min_samples": min(200, rows_per_window)},
        "cooldown_s": 0,
    }
    harness._ok("PUT", f"/models/{model}/monitoring/policy", json=policy)
    found = []
    for _ in range(windows):
        time.sleep(window_s)  # the next window holds only the next batch
        answer = harness.predict(model, rows(rng, rows_per_window, shift), key=None)
        assert "request_id" in answer, answer
        evaluations = harness._ok("POST", f"/models/{model}/monitoring/evaluate")
        found.append([f for e in evaluations for f in e.get("drifted", [])])
    return found


def live_reference(harness: Harness, model: str, rng: np.random.Generator, rows_needed: int) -> str:
    """Send the deployed version's first traffic and evaluate until it has a reference
    (the first `rows_needed` rows, when it has none from training); its source."""
    for start in range(0, rows_needed, 200):
        harness.predict(model, rows(rng, min(200, rows_needed - start)), key=None)
    deadline = time.monotonic() + 30
    while True:
        evaluations = harness._ok("POST", f"/models/{model}/monitoring/evaluate")
        drift = harness._ok("GET", f"/models/{model}/monitoring", headers=harness.viewer)["drift"]
        sources = {d.get("reference_source") for d in drift if d.get("reference")}
        if sources:
            return str(sources.pop())
        if time.monotonic() > deadline:
            raise AssertionError(f"no reference: {evaluations} {drift}")
        harness.predict(model, rows(rng, 50), key=None)
        time.sleep(0.5)
