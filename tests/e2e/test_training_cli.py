"""The training walkthrough of docs/training.md on a fresh service: `scripts/serve`, then Ray's own
job CLI with the sample config, then the service's API shows the job and the version."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testkit.service import ROOT, Service

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BASE = "/api/v1/ml"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service(tmp_path_factory.mktemp("training-service"))
    service.start()
    try:
        yield service
    finally:
        service.stop()


def dashboard_url(service: Service) -> str:
    """Where `serve run` says the Ray dashboard is."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", service.log())
    found = re.search(r"View the dashboard at (?:https?://)?([\w.\-]+:\d+)", plain)
    assert found, plain[-3000:]
    return f"http://{found.group(1)}"


def test_the_readme_training_job_from_the_command_line(service: Service) -> None:
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
            dashboard_url(service),
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
    assert "registered churn version 1" in output, output[-5000:]
    job_id = re.search(r"Job '([\w\-]+)' succeeded", output)
    assert job_id, output[-3000:]

    token = Path(service.data_dir / "admin.token").read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=service.url, timeout=60, headers=auth) as http:
        job = http.get(f"{BASE}/training/{job_id.group(1)}").json()
        assert job["state"] == "succeeded", job
        assert job["kind"] == "train"  # found through its MLflow run, though not submitted here
        assert job["progress"] == {"done": 5, "total": 5, "unit": "epochs"}
        assert job["registered"] == {"model": "churn", "version": 1}
        version = http.get(f"{BASE}/models/churn/versions/1").json()
        assert version["stage"] == "development"
        assert version["lineage"]["training"] == {"trainer": "mlp_classifier", "num_workers": 2}
        metrics = job["metrics"]
        assert metrics["val_accuracy"] > metrics["baseline_accuracy"] + 0.03, metrics
