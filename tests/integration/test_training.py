"""Training, tuning and batch prediction as Ray jobs, submitted through the API, on a real
cluster with Ray Train, Tune, Data and MLflow."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow.artifacts
import pandas as pd
import pytest
from mlflow import MlflowClient

from app.core.access import Role
from app.core.drift import PREDICTION, REFERENCE_ARTIFACT, Reference
from app.samples import churn
from app.settings import Settings
from testkit.auth import Tokens
from testkit.settings import CONFIGS
from testkit.waiting import wait_for
from tests.integration.ml_app import running_ml_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE = "/api/v1/ml"
MAX_ACTIVE = 3  # training.max_active_jobs here


@dataclass
class Service:
    http: httpx.Client
    tokens: Tokens
    settings: Settings
    workdir: Path

    def submit(self, spec: dict[str, Any]) -> httpx.Response:
        return self.http.post(
            f"{BASE}/training/submit", json=spec, headers=self.tokens.header(Role.ENGINEER)
        )

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(
            f"{BASE}/training/{job_id}", headers=self.tokens.header(Role.VIEWER)
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait(self, job_id: str, seconds: float = 420) -> dict[str, Any]:
        def ended() -> dict[str, Any]:  # empty (falsy) until it ended
            job = self.job(job_id)
            return job if job["state"] in ("succeeded", "failed", "stopped") else {}

        return wait_for(ended, f"job {job_id} to end", timeout_s=seconds, poll_s=0.5)

    def logs(self, job_id: str) -> str:
        return self.http.get(
            f"{BASE}/training/{job_id}/logs", headers=self.tokens.header(Role.VIEWER)
        ).text

    def errors(self, job_id: str) -> str:
        """The lines of a job's log that explain a failure."""
        job = self.job(job_id)
        text = self.logs(job_id) + "\n" + (job.get("message") or "")
        lines = text.replace("\r", "\n").splitlines()
        keep = [line for line in lines if "Dataset" not in line and line.strip()]
        return "\n".join(keep)[-6000:]

    @property
    def mlflow(self) -> MlflowClient:
        return MlflowClient(self.settings.mlflow.tracking_uri)


@pytest.fixture(scope="module")
def service(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    workdir = tmp_path_factory.mktemp("training")
    env = {"ML_TRAINING__WORKDIR": str(workdir), "ML_TRAINING__MAX_ACTIVE_JOBS": str(MAX_ACTIVE)}
    with (
        running_ml_app(workdir / "data", env) as app,
        httpx.Client(base_url=app.url, timeout=120) as http,
    ):
        yield Service(http, app.tokens, app.settings, workdir)


def training_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "experiment": "churn-training",
        "trainer": "mlp_classifier",
        "dataset": {"generate": {"rows": 4000, "seed": 0}, "target": "churned"},
        "params": {"hidden": [32, 16], "lr": 0.01, "epochs": 4, "batch_size": 128},
        "scaling": {"num_workers": 2, "cpus_per_worker": 1},
        "register": {"model": "churn"},
    }
    spec.update(overrides)
    return spec


def test_a_two_worker_training_job_trains_logs_and_registers(service: Service) -> None:
    response = service.submit(training_spec())
    assert response.status_code == 201, response.text
    job_id = response.json()["job_id"]
    assert response.headers["location"].endswith(f"/training/{job_id}")
    job = service.wait(job_id)
    assert job["state"] == "succeeded", (job, service.errors(job_id))
    assert job["progress"] == {"done": 4, "total": 4, "unit": "epochs"}
    assert job["registered"]["model"] == "churn"
    assert job["submitted_by"] == "engineer-user"

    run = service.mlflow.get_run(job["mlflow_run_id"])
    history = service.mlflow.get_metric_history(run.info.run_id, "val_accuracy")
    assert sorted(m.step for m in history) == [0, 1, 2, 3]  # one point per epoch
    baseline = run.data.metrics["baseline_accuracy"]  # always predicting the majority class
    assert run.data.metrics["val_accuracy"] > baseline + 0.03, run.data.metrics
    assert run.outputs and run.outputs.model_outputs  # the logged model
    reference = Reference.from_dict(
        mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{REFERENCE_ARTIFACT}")
    )  # what monitoring compares traffic with
    assert set(reference.features) == {*churn.FEATURES, PREDICTION}
    assert reference.rows > 1000

    version = service.http.get(
        f"{BASE}/models/churn/versions/{job['registered']['version']}",
        headers=service.tokens.header(Role.VIEWER),
    ).json()
    assert version["stage"] == "development" and version["run_id"] == run.info.run_id
    (dataset,) = version["lineage"]["datasets"]
    assert dataset["digest"] and "churned" in dataset["schema"]
    assert version["lineage"]["training"] == {"trainer": "mlp_classifier", "num_workers": 2}
    assert version["events"][0]["actor"] == f"job:{job_id}"
    assert "registered churn version" in service.logs(job_id)
    listed = service.http.get(f"{BASE}/training", headers=service.tokens.header(Role.VIEWER))
    assert job_id in [j["job_id"] for j in listed.json()]


def test_bad_requests_are_refused_before_anything_runs(service: Service) -> None:
    def jobs() -> int:
        return len(
            service.http.get(f"{BASE}/training", headers=service.tokens.header(Role.VIEWER)).json()
        )

    before = jobs()
    cases = [
        (training_spec(trainer="mlp_transformer"), "trainer"),
        (training_spec(trainer="not_installed.module:train"), "trainer"),
        (training_spec(scaling={"num_workers": -2}), "scaling.num_workers"),
        (training_spec(scaling={"num_workers": 2, "use_gpu": True}), "scaling.use_gpu"),
        (training_spec(scaling={"num_workers": 64}), "scaling.num_workers"),
        (training_spec(tune={"search_space": {"lr": {"uniform": [1, 0]}}}), "search_space.lr"),
        (training_spec(dataset={"path": "missing.parquet", "target": "y"}), "dataset.path"),
    ]
    for spec, field in cases:
        response = service.submit(spec)
        assert response.status_code == 422, (field, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        fields = [e["field"] for e in response.json()["errors"]]
        assert any(f.startswith(field) for f in fields), (field, fields)
    assert jobs() == before
    missing = service.http.get(
        f"{BASE}/training/no-such-job", headers=service.tokens.header(Role.VIEWER)
    )
    assert missing.status_code == 404 and missing.json()["code"] == "job_not_found"


def test_twenty_submissions_at_once_are_queued_or_refused_and_none_is_lost(
    service: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    """20 real submissions at once on the 2-CPU cluster: each is either a job (pending,
    then stopped here) or 429 too_many_jobs with the count and the limit; every accepted
    job is listed and ends, and no other job appears."""

    def listed() -> set[str]:
        found = service.http.get(f"{BASE}/training", headers=service.tokens.header(Role.VIEWER))
        return {j["job_id"] for j in found.json()}

    before = listed()
    spec = training_spec(experiment="churn-burst", register=None)
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: service.submit(spec), range(20)))
    accepted = [a.json()["job_id"] for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code != 201]
    for answer in refused:
        assert answer.status_code == 429, answer.text
        problem = answer.json()
        assert problem["code"] == "too_many_jobs" and problem["context"]["limit"] == MAX_ACTIVE
        assert problem["context"]["active"] >= MAX_ACTIVE
    # each ingress replica counts before it submits: at most the limit per replica
    assert 1 <= len(accepted) <= 2 * MAX_ACTIVE and len(refused) == 20 - len(accepted)
    assert listed() - before == set(accepted)  # none lost, none extra
    for job_id in accepted:
        stopped = service.http.post(
            f"{BASE}/training/{job_id}/cancel", headers=service.tokens.header(Role.ENGINEER)
        )
        assert stopped.status_code == 202, stopped.text
    ended = [service.wait(job_id, 300)["state"] for job_id in accepted]
    assert set(ended) <= {"stopped", "failed", "succeeded"}, ended
    with capsys.disabled():  # the counts, in CI's output
        sys.stdout.write(
            f"\ntest_training: 20 submissions at once: {len(accepted)} accepted (then "
            f"stopped: {sorted(ended)}), {len(refused)} refused with 429 too_many_jobs\n"
        )


def tuning_spec(
    searcher: str, space: dict[str, Any], scheduler: str = "asha", samples: int = 8
) -> dict[str, Any]:
    return training_spec(
        experiment=f"churn-tuning-{searcher}-{scheduler}",
        dataset={"generate": {"rows": 2000, "seed": 1}, "target": "churned"},
        params={"epochs": 4, "batch_size": 128},
        tune={
            "searcher": searcher,
            "search_space": space,
            "num_samples": samples,
            "max_concurrent_trials": 2,
            "metric": "val_loss",
            "mode": "min",
            "scheduler": {"kind": scheduler, "grace_period": 1, "reduction_factor": 2},
            "seed": 3,
        },
    )


SPACE = {"lr": {"loguniform": [0.0003, 0.3]}, "hidden": {"choice": [[8], [32, 16]]}}


def runs_of(service: Service, experiment: str) -> tuple[Any, list[Any]]:
    found = service.mlflow.get_experiment_by_name(experiment)
    assert found is not None
    runs = service.mlflow.search_runs([found.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    return parents[0], children


def test_asha_stops_bad_trials_early_and_the_best_is_registered(service: Service) -> None:
    asha = service.submit(tuning_spec("random", SPACE, "asha")).json()["job_id"]
    job = service.wait(asha, 600)
    assert job["state"] == "succeeded", (job, service.errors(asha))
    assert job["progress"] == {"done": 8, "total": 8, "unit": "trials"}
    parent, children = runs_of(service, "churn-tuning-random-asha")
    assert len(children) == 8  # one child run per trial
    # FIFO would run every trial's 4 epochs (32); ASHA stopped some trials early
    assert parent.data.metrics["total_epochs"] < 8 * 4
    assert any(c.data.tags.get("mlservice.stopped_early") == "true" for c in children)
    assert all(c.info.status in ("FINISHED", "KILLED") for c in children)
    assert len({c.data.params["lr"] for c in children}) == 8  # no params mixed up

    job = service.job(asha)
    best = service.http.get(
        f"{BASE}/models/churn/versions/{job['registered']['version']}",
        headers=service.tokens.header(Role.VIEWER),
    ).json()
    training = best["lineage"]["training"]
    assert training["searcher"] == "random" and training["seed"] == 3
    assert training["search_space"] == SPACE and training["tuning_run_id"] == parent.info.run_id
    assert best["lineage"]["parent_run_id"] == parent.info.run_id
    assert best["run_id"] == parent.data.tags["mlservice.best_run"]
    assert best["lineage"]["datasets"][0]["digest"]


@pytest.mark.parametrize(
    ("searcher", "space", "trials"),
    [
        ("grid", {"lr": {"grid": [0.003, 0.03]}, "hidden": {"grid": [[8], [16]]}}, 4),
        ("bayesian", {"lr": {"loguniform": [0.001, 0.1]}, "dropout": {"uniform": [0, 0.3]}}, 4),
    ],
)
def test_grid_and_bayesian_search(
    service: Service, searcher: str, space: dict[str, Any], trials: int
) -> None:
    spec = tuning_spec(searcher, space, "fifo", samples=trials)
    spec["register"] = None
    response = service.submit(spec)
    assert response.status_code == 201, response.text
    job = service.wait(response.json()["job_id"], 600)
    assert job["state"] == "succeeded", (job, service.errors(job["job_id"]))
    parent, children = runs_of(service, f"churn-tuning-{searcher}-fifo")
    assert len(children) == trials
    if searcher == "grid":
        assert {(c.data.params["lr"], c.data.params["hidden"]) for c in children} == {
            ("0.003", "[8]"),
            ("0.003", "[16]"),
            ("0.03", "[8]"),
            ("0.03", "[16]"),
        }
    assert parent.data.tags["mlservice.searcher"] == searcher
    assert parent.data.metrics["total_epochs"] == trials * 4  # FIFO: every epoch of every trial


def train_workers() -> list[int]:
    from ray.util.state import list_actors

    actors = list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
    return [a.pid for a in actors if "TrainWorker" in (a.class_name or "")]


def kill_a_worker_mid_training(service: Service, name: str, max_failures: int) -> str:
    """Submit a 12-epoch job registering `name`; SIGKILL a Train worker once epochs are
    checkpointed (done >= 2: the controller has registered epoch 1's), before the end
    (ten epochs later: epochs on in-memory shards take about a second here)."""
    spec = training_spec(
        experiment=name,
        dataset={"generate": {"rows": 120_000, "seed": 2}, "target": "churned"},
        params={"hidden": [64, 64], "epochs": 12, "batch_size": 64},
        max_failures=max_failures,
        register={"model": name},
    )
    job_id = str(service.submit(spec).json()["job_id"])
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        progress = service.job(job_id)["progress"]
        if progress and progress["done"] >= 2:
            break
        time.sleep(0.5)
    workers = train_workers()
    assert workers, "no training worker found"
    os.kill(workers[0], signal.SIGKILL)
    assert service.job(job_id)["progress"]["done"] < 12  # killed mid-training
    return job_id


def test_a_killed_worker_resumes_from_the_last_checkpoint(service: Service) -> None:
    job_id = kill_a_worker_mid_training(service, "churn-recovery", max_failures=2)
    job = service.wait(job_id, 600)
    assert job["state"] == "succeeded", (job, service.errors(job_id))
    run = service.mlflow.get_run(job["mlflow_run_id"])
    assert int(run.data.tags["mlservice.resumed_at_epoch"]) >= 1  # not from scratch
    steps = [m.step for m in service.mlflow.get_metric_history(run.info.run_id, "epoch")]
    assert sorted(set(steps)) == list(range(12))
    versions = service.http.get(
        f"{BASE}/models/churn-recovery/versions", headers=service.tokens.header(Role.VIEWER)
    ).json()["items"]
    assert len(versions) == 1  # registered once, after the recovered run


def test_without_recovery_a_killed_worker_fails_the_job_clearly(service: Service) -> None:
    job_id = kill_a_worker_mid_training(service, "churn-no-recovery", max_failures=0)
    job = service.wait(job_id, 600)
    assert job["state"] == "failed"
    assert job["message"] and "Error" in job["message"]
    models = service.http.get(
        f"{BASE}/models/churn-no-recovery", headers=service.tokens.header(Role.VIEWER)
    )
    assert models.status_code == 404  # nothing half-registered


def test_batch_prediction_over_100k_rows(service: Service) -> None:
    source = service.workdir / "score.parquet"
    churn.generate(100_000, seed=9).drop(columns=["churned"]).to_parquet(source)
    trained = service.submit(
        training_spec(
            experiment="churn-batch",
            register={"model": "churn-batch"},
            params={"hidden": [16], "epochs": 1, "batch_size": 256},
            scaling={"num_workers": 1},
        )
    )
    job = service.wait(trained.json()["job_id"])
    assert job["state"] == "succeeded", job
    version = job["registered"]["version"]
    response = service.submit(
        {
            "kind": "batch_predict",
            "model": "churn-batch",
            "version": version,
            "input": "score.parquet",
            "output": "predictions",
            "id_column": "id",
            "batch_size": 8192,
            "concurrency": 2,
        }
    )
    assert response.status_code == 201, response.text
    job = service.wait(response.json()["job_id"])
    assert job["state"] == "succeeded", (job, service.errors(job["job_id"]))
    assert job["progress"] == {"done": 100_000, "total": 100_000, "unit": "rows"}
    output = pd.read_parquet(service.workdir / "predictions")
    assert len(output) == 100_000 and output["id"].nunique() == 100_000
    assert set(output["model_version"]) == {version} and output["input_digest"].nunique() == 1
    assert all(len(p) == 2 for p in output["prediction"].head(100))  # class probabilities
    manifest = json.loads((service.workdir / "predictions" / "_manifest.json").read_text())
    assert manifest["rows_in"] == manifest["rows_out"] == 100_000


def test_a_training_function_of_your_own(service: Service) -> None:
    spec = training_spec(
        experiment="churn-custom",
        trainer="app.jobs.examples:logistic_regression",
        params={"epochs": 3, "lr": 0.2, "batch_size": 64, "task": "classification"},
        scaling={"num_workers": 1},
        register={"model": "churn-logistic"},
    )
    job = service.wait(service.submit(spec).json()["job_id"])
    assert job["state"] == "succeeded", (job, service.errors(job["job_id"]))
    assert job["registered"]["model"] == "churn-logistic"
    run = service.mlflow.get_run(job["mlflow_run_id"])
    assert run.data.metrics["val_accuracy"] > run.data.metrics["baseline_accuracy"]


def test_train_on_a_feature_service_deploy_and_predict_by_entity_key(service: Service) -> None:
    engineer, viewer = service.tokens.header(Role.ENGINEER), service.tokens.header(Role.VIEWER)
    feast_dir = service.settings.data_dir / "feast"
    materialized = service.http.post(f"{BASE}/features/materialize", headers=engineer)
    assert materialized.status_code == 200, materialized.text
    spec = training_spec(
        experiment="churn-features",
        dataset={
            "feature_service": "churn_v1",
            "entities": str(feast_dir / "churn_labels.parquet"),
            "target": "churned",
        },
        params={"hidden": [16], "epochs": 2, "batch_size": 64},
        scaling={"num_workers": 1},
        register={"model": "churn-features"},
    )
    response = service.submit(spec)
    assert response.status_code == 201, response.text
    job = service.wait(response.json()["job_id"])
    assert job["state"] == "succeeded", (job, service.errors(job["job_id"]))
    version = job["registered"]["version"]
    lineage = service.http.get(
        f"{BASE}/models/churn-features/versions/{version}", headers=viewer
    ).json()["lineage"]
    assert lineage["feature_service"] == "churn_v1"
    assert [ref for ref, _ in lineage["training"]["feature_signature"]][0] == (
        "customer_stats:tenure_months"
    )

    staged = service.http.post(  # live traffic is for validated versions only
        f"{BASE}/models/churn-features/promote",
        json={"version": version, "to": "staging"},
        headers=engineer,
    )
    assert staged.status_code == 200, staged.text
    deployed = service.http.post(
        f"{BASE}/models/churn-features/deploy",
        json={"strategy": "replace", "version": version},
        headers=engineer,
    )
    assert deployed.status_code == 200, deployed.text
    keys = [{"customer_id": 5}, {"customer_id": 77}]
    by_key = service.http.post(
        f"{BASE}/predict", json={"model": "churn-features", "entities": keys}, headers=viewer
    )
    assert by_key.status_code == 200, by_key.text
    fetched = service.http.post(
        f"{BASE}/features/serve",
        json={"feature_service": "churn_v1", "entities": keys},
        headers=viewer,
    ).json()
    by_hand = [
        {column.partition(":")[2]: row[column] for column in row if ":" in column}
        for row in fetched["rows"]
    ]
    direct = service.http.post(
        f"{BASE}/predict", json={"model": "churn-features", "inputs": by_hand}, headers=viewer
    )
    assert by_key.json()["predictions"] == direct.json()["predictions"]
    unknown = service.http.post(
        f"{BASE}/predict",
        json={"model": "churn-features", "entities": [{"customer_id": 10**9}]},
        headers=viewer,
    )
    assert unknown.status_code == 422 and "not_found" in unknown.text

    # the feature contract: churn_v1 loses a feature -> deploying the version is refused
    import importlib.util

    from feast import FeatureService, FeatureStore

    os.environ["ML_FEAST_DIR"] = str(feast_dir)
    module_spec = importlib.util.spec_from_file_location(
        "repo_features", CONFIGS / "feature_repo" / "features.py"
    )
    assert module_spec is not None and module_spec.loader is not None
    repo = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(repo)
    store = FeatureStore(repo_path=str(CONFIGS / "feature_repo"))
    narrower = repo.customer_stats[["tenure_months", "monthly_charges"]]
    store.apply([FeatureService(name="churn_v1", features=[narrower])])
    try:
        # the replicas' registry cache (5 s) still knows the old service for a while:
        # that deploy replaces the version by itself, which changes nothing
        def deploy() -> httpx.Response:
            response = service.http.post(
                f"{BASE}/models/churn-features/deploy",
                json={"strategy": "replace", "version": version},
                headers=engineer,
            )
            assert response.status_code != 200, "the old feature service is still cached"
            return response

        refused = wait_for(deploy, "the narrower feature service seen", timeout_s=60, poll_s=0.5)
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "feature_contract_broken"
    finally:
        store.apply([repo.churn_v1])


def test_data_read_in_memory_and_on_the_cluster_is_described_the_same(
    ray_cluster: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job reads data that fits in memory with pyarrow and larger data with Ray Data;
    either way the statistics are those of the split Ray Train gets."""
    from types import SimpleNamespace

    import numpy as np

    from app.adapters.storage import open_storage
    from app.jobs import tabular
    from app.jobs.spec import DatasetSpec, GeneratedData
    from app.settings.platform import StorageSettings

    storage = open_storage(StorageSettings(uri=str(tmp_path / "files"), cache_dir=tmp_path))
    context: Any = SimpleNamespace(storage=storage)
    spec = DatasetSpec(generate=GeneratedData(rows=1000, seed=3), validation_fraction=0.25)
    described = {"in memory": tabular.load(spec, context)}
    monkeypatch.setattr(tabular, "IN_MEMORY_CELLS", 0)
    described["on the cluster"] = tabular.load(spec, context)
    for how, data in described.items():
        train, val = data.train.to_pandas(), data.val.to_pandas()
        assert (len(train), len(val), data.rows) == (750, 250, 1000), how
        assert list(train.columns) == [*data.features, "churned"], how
        np.testing.assert_allclose(data.mean, train[data.features].mean(), rtol=1e-9)
        np.testing.assert_allclose(data.std, train[data.features].std(ddof=1), rtol=1e-9)
        assert data.val_target_mean == pytest.approx(val["churned"].mean()), how
        assert data.val_target_std == pytest.approx(val["churned"].std(ddof=1)), how
        for sample, rows in ((data.train_sample, train), (data.val_sample, val)):
            # Ray's frames hold pyarrow dtypes; the same values
            pd.testing.assert_frame_equal(sample, rows[data.features], check_dtype=False, obj=how)
        want = val[data.features].head(5).astype("float64")
        pd.testing.assert_frame_equal(data.example, want, obj=how)
    memory, cluster = described.values()
    assert (memory.schema, memory.features, memory.digest) == (
        cluster.schema,
        cluster.features,
        cluster.digest,
    )
