"""The service on a three-node Ray cluster whose nodes share nothing but the network
(`scripts/cluster`: a head and two workers, each worker in a mount namespace with private
tmpfs over the data directory, /tmp and /dev/shm), on the production stores.

Deployed as an operator would (`scripts/cluster deploy`: `serve deploy` of
serve_config.yaml with deploy/placement.yaml), a training job submitted with
`ray job submit`, and the placement read back from Ray's state API: training workers and
model-server replicas on worker nodes, the state actors on the head, checkpoints in S3,
the prediction log written by ingress replicas on two nodes and read by the monitor. Then
the model servers scale up under a load step and back down; the node holding the
model-server replica is killed under steady load; a worker node is killed mid-training
and the job resumes from its S3 checkpoint on the other one.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import yaml

from app.core.access import Role
from app.samples import churn
from testkit.auth import RoleClient, Tokens
from testkit.cluster import Cluster, local_cluster
from testkit.stack import ROOT, day_settings
from testkit.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BASE = "/api/v1/ml"
FEATURES = list(churn.FEATURES)
REQUEST_TIMEOUT_S = 60  # a request without an answer by then hangs
RECOVERY_S = 120  # after a node is lost, requests fail for at most this long


class Site(RoleClient):
    """The cluster with the service on it, and an HTTP client per role."""

    def __init__(self, cluster: Cluster, tokens: Tokens) -> None:
        super().__init__(cluster.url + BASE, tokens)
        self.cluster = cluster

    def job(self, job_id: str) -> dict[str, Any]:
        """Wait until a training job ends; its view."""
        ended: dict[str, Any] | None = wait_for(
            lambda: (
                s
                if (s := self.ok("GET", f"/training/{job_id}", Role.VIEWER))["state"]
                in ("succeeded", "failed", "stopped")
                else None
            ),
            f"training job {job_id} did not end",
            timeout_s=900,
        )
        assert ended is not None
        return ended

    def bucket(self, prefix: str) -> list[str]:
        s3 = self.cluster.stack.s3()
        keys: list[str] = []
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket="ml-artifacts", Prefix=prefix)
        for page in pages:
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys

    def node_of(self, class_name: str) -> list[str]:
        """The node names of a class's live actors."""
        names = self.cluster.nodes()
        return [names.get(a["node_id"], a["node_id"]) for a in self.cluster.actors(class_name)]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tokens = Tokens()
    env = day_settings(tokens.entries())
    # under /tmp: private to each worker node (a tmpfs of its own)
    data_dir = tmp_path_factory.mktemp("cluster-data")
    with local_cluster(env, data_dir) as cluster:
        yield Site(cluster, tokens)


Report = Callable[[str], None]


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Report:
    """Print a line to CI's output, whatever pytest captures."""

    def write(line: str) -> None:
        with capsys.disabled():
            sys.stdout.write(f"\ntest_cluster: {line}\n")

    return write


def rows(seed: int, count: int) -> list[dict[str, float]]:
    frame = churn.generate(count, seed)
    records: list[dict[str, float]] = frame[FEATURES].to_dict(orient="records")
    return records


def test_jobs_replicas_and_the_monitor_on_the_worker_nodes(site: Site) -> None:
    cluster = site.cluster
    names = cluster.nodes()
    assert sorted(names.values()) == ["head", "worker-1", "worker-2"], names
    for actor in (
        "RegistryActor",
        "TrafficActor",
        "MonitorActor",
        "ServeReplica:mlflow:MlflowServer",
    ):
        assert site.node_of(actor) == ["head"], actor  # where placement.yaml says

    # the Ray dashboard answers, and only with the cluster's token (token auth on)
    assert httpx.get(cluster.dashboard + "/", timeout=30).status_code == 200
    assert httpx.get(cluster.dashboard + "/api/jobs/", timeout=30).status_code == 401
    ray_token = (cluster.directory / "secrets" / "ray_token").read_text()
    jobs = httpx.get(
        cluster.dashboard + "/api/jobs/", headers={"Authorization": f"Bearer {ray_token}"}
    )
    assert jobs.status_code == 200, jobs.text

    # a training job with Ray's own CLI, as an operator submits one
    submission = f"cluster-train-{int(time.time())}"
    cluster.ray(
        "job",
        "submit",
        "--address",
        cluster.dashboard,
        "--submission-id",
        submission,
        "--working-dir",
        ".",
        "--no-wait",
        "--",
        "python",
        "-m",
        "app.jobs.train",
        "--config",
        "configs/training/churn_baseline.yaml",
    )
    workers = wait_for(
        lambda: site.node_of("RayTrainWorker"), "no Ray Train worker started", timeout_s=600
    )
    assert set(workers) <= {"worker-1", "worker-2"}, workers
    job = site.job(submission)
    assert job["state"] == "succeeded", job
    version = job["registered"]["version"]
    checkpoints = site.bucket(f"data/checkpoints/train/{submission}/")
    assert any("/checkpoint_" in key for key in checkpoints), checkpoints[:20]

    # the version loaded by a model-server replica on a worker node, predictions served
    site.ok("POST", "/models/churn/promote", json={"version": version, "to": "staging"})
    site.ok("POST", "/models/churn/deploy", json={"strategy": "replace", "version": version})
    sent = rows(seed=5, count=400)
    for start in range(0, len(sent), 20):
        # a connection each: HAProxy balances them over the ingress replicas of two nodes
        answer = httpx.post(
            f"{cluster.url}{BASE}/predict",
            json={"model": "churn", "inputs": sent[start : start + 20]},
            headers=site.tokens.header(Role.VIEWER),
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == version
    assert set(site.node_of("ServeReplica:ml:ModelServer")) <= {"worker-1", "worker-2"}
    ingress = cluster.actors("ServeReplica:ml:Ingress")
    assert len({a["node_id"] for a in ingress}) == 2, ingress

    # the prediction log: files from the ingress replicas of two nodes, one dataset in S3
    prefix = f"data/predictions/model=churn/version={version}/"

    def writers_of_the_log() -> set[str] | None:
        found = {key.rsplit("/", 1)[1].split("-")[1] for key in site.bucket(prefix)}
        return found if len(found) >= 2 else None

    writers = wait_for(writers_of_the_log, "the prediction log was not written from two nodes")
    assert writers is not None
    assert all(any(a["node_id"].startswith(w) for a in ingress) for w in writers), writers
    evaluations = wait_for(
        lambda: [
            e
            for e in site.ok("POST", "/models/churn/monitoring/evaluate")
            if e["window"]["rows"] >= len(sent) and e["reference"]
        ],
        "no drift evaluation over every logged prediction",
    )
    assert evaluations[0]["version"] == version, evaluations


@dataclass
class Load:
    """Steady prediction traffic from `clients` threads; every answer recorded."""

    site: Site
    clients: int
    results: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Load:
        self.threads = [
            threading.Thread(target=self._client, args=(i,)) for i in range(self.clients)
        ]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(REQUEST_TIMEOUT_S + 10)

    def _client(self, index: int) -> None:
        batch = rows(seed=index, count=4)
        headers = self.site.tokens.header(Role.VIEWER)
        with httpx.Client(base_url=self.site.cluster.url + BASE, timeout=REQUEST_TIMEOUT_S) as http:
            while not self.stop.is_set():
                try:
                    answer = http.post(
                        "/predict", json={"model": "churn", "inputs": batch}, headers=headers
                    )
                    outcome = str(answer.status_code)
                except httpx.TimeoutException:
                    outcome = "timeout"
                except httpx.TransportError as error:
                    outcome = type(error).__name__
                self.results.append((time.monotonic(), outcome))

    def since(self, moment: float) -> list[tuple[float, str]]:
        return [r for r in list(self.results) if r[0] >= moment]


def test_model_servers_scale_up_under_a_load_step_and_back_down(site: Site, report: Report) -> None:
    cluster = site.cluster
    assert cluster.running_replicas("ml", "ModelServer") == 1
    with Load(site, clients=24) as load:
        wait_for(
            lambda: cluster.running_replicas("ml", "ModelServer") == 2,
            "the model servers did not scale up under load",
            timeout_s=180,
        )
        served = load.since(0)
    assert served and {outcome for _, outcome in served} == {"200"}, served[-20:]
    replicas = site.node_of("ServeReplica:ml:ModelServer")
    assert len(replicas) == 2 and set(replicas) <= {"worker-1", "worker-2"}, replicas
    wait_for(
        lambda: cluster.running_replicas("ml", "ModelServer") == 1,
        "the model servers did not scale back down after the load",
        timeout_s=300,
    )
    report(f"autoscaling: {len(served)} requests under load, 1 -> 2 -> 1 model-server replicas")


def test_losing_the_model_servers_node_under_load(site: Site, report: Report) -> None:
    cluster = site.cluster
    [node] = site.node_of("ServeReplica:ml:ModelServer")
    with Load(site, clients=4) as load:
        wait_for(lambda: len(load.results) >= 20, "no traffic before the kill")
        killed_at = time.monotonic()
        cluster.run("kill", node)
        # Serve replaces the replica on the other worker node, and requests succeed again
        wait_for(
            lambda: set(site.node_of("ServeReplica:ml:ModelServer")) - {node},
            "the model server was not replaced on another node",
            timeout_s=RECOVERY_S + 60,
        )
        wait_for(
            lambda: (
                (after := load.since(killed_at))
                and len(after) >= 40
                and {o for _, o in after[-30:]} == {"200"}
            ),
            "requests did not succeed again after the node was lost",
            timeout_s=RECOVERY_S + 60,
        )
    after = load.since(killed_at)
    failed = [(round(t - killed_at, 1), o) for t, o in after if o != "200"]
    last_failure = max((t for t, _ in failed), default=0.0)
    report(
        f"node {node} killed: {len(after)} requests after it, {len(failed)} failed "
        f"({sorted({o for _, o in failed})}), the last {last_failure} s after the kill"
    )
    assert not [o for _, o in after if o == "timeout"], failed  # nothing hangs
    assert last_failure <= RECOVERY_S, failed
    assert set(site.node_of("ServeReplica:ml:ModelServer")) <= {"worker-1", "worker-2"} - {node}
    cluster.run("start", node)
    wait_for(lambda: len(cluster.nodes()) == 3, f"{node} did not come back")


def test_a_worker_node_lost_mid_training_resumes_from_the_s3_checkpoint(
    site: Site, report: Report
) -> None:
    spec = yaml.safe_load((ROOT / "configs" / "training" / "churn_mlp.yaml").read_text())
    # long enough to be killed in the middle: 24 epochs of about a second each (20,000
    # rows in batches of 256 take 0.05 s an epoch, over before the kill lands; the kill
    # has landed 6-7 epochs after the second here)
    spec["dataset"]["generate"]["rows"] = 120_000
    spec["params"].update({"epochs": 24, "batch_size": 64, "hidden": [64, 64]})
    spec["scaling"] = {"num_workers": 1, "cpus_per_worker": 0.5}
    spec["register"] = {"model": "churn-cluster", "description": "survives a lost node"}
    job_id = site.ok("POST", "/training/submit", json=spec)["job_id"]
    wait_for(
        lambda: (
            (site.ok("GET", f"/training/{job_id}", Role.VIEWER).get("progress") or {}).get(
                "done", 0
            )
            >= 2
        ),
        "the job did not finish two epochs",
        timeout_s=600,
    )
    [node] = site.node_of("RayTrainWorker")
    assert node in ("worker-1", "worker-2")
    site.cluster.run("kill", node)
    job = site.job(job_id)
    assert job["state"] == "succeeded", job
    assert job["registered"]["model"] == "churn-cluster", job
    from mlflow import MlflowClient

    os.environ["MLFLOW_TRACKING_TOKEN"] = site.tokens.by_role[Role.VIEWER]
    try:
        run = MlflowClient(f"{site.cluster.url}/mlflow").get_run(job["mlflow_run_id"])
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    resumed = int(run.data.tags["mlservice.resumed_at_epoch"])
    assert resumed >= 2, run.data.tags  # from the checkpoint, not from scratch
    report(f"node {node} killed mid-training: resumed at epoch {resumed}, {job['registered']}")
    site.cluster.run("start", node)
