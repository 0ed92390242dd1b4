"""The local multi-node cluster of `scripts/cluster` for tests: a private one per caller, on
a private stack (testkit/stack.py), in a temporary ML_CLUSTER_DIR on a free port range,
taken down afterwards (by the namespaces of its own nodes: never `ray stop`).

Ray's state is read the way an operator reads it: `ray list ... --format json` against
the dashboard with the cluster's token (no driver joins the cluster from the test).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testkit.stack import ROOT, Stack, _port_free, free_ports, local_stack

CLUSTER = ROOT / "scripts" / "cluster"
RAY = ROOT / ".venv" / "bin" / "ray"
SERVE = ROOT / ".venv" / "bin" / "serve"
# the ports scripts/cluster uses relative to ML_CLUSTER_PORT (see its `ports`)
_OFFSETS = (
    [0, *range(300, 306)]
    + [100 * node + offset for node in range(3) for offset in range(1, 7)]
    + [100 * node + offset for node in range(3) for offset in range(10, 100)]
)
# A group's resource names the node that has it (deploy/placement.yaml `nodes`).
NODE_BY_RESOURCE = {"ml_head": "head", "ml_cpu_worker": "worker-1", "ml_gpu_worker": "worker-2"}


@dataclass
class Cluster:
    """One started cluster: its folder, ports, and the environment its commands run in."""

    directory: Path
    port: int
    http_port: int
    environ: dict[str, str]
    stack: Stack

    @property
    def dashboard(self) -> str:
        """The dashboard's URL (jobs, state, Serve's REST API)."""
        return f"http://127.0.0.1:{self.port + 300}"

    @property
    def url(self) -> str:
        """The service's HTTP root."""
        return f"http://127.0.0.1:{self.http_port}"

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """`scripts/cluster ARGS`; raises with its output unless it exits 0."""
        result = subprocess.run(
            [str(CLUSTER), *args],
            env=self.environ,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"scripts/cluster {' '.join(args)}: {result.stderr[-4000:]}")
        return result

    def client_env(self) -> dict[str, str]:
        """The environment of a Ray client of this cluster (`ray`, `serve`)."""
        lines = self.run("env").stdout.splitlines()
        return {**self.environ, **dict(line.split("=", 1) for line in lines)}

    def ray(self, *args: str, timeout: float = 120) -> str:
        """`ray ARGS` as a client of this cluster; its output."""
        result = subprocess.run(
            [str(RAY), *args],
            env=self.client_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )
        if result.returncode != 0:
            raise RuntimeError(f"ray {' '.join(args)}: {result.stderr[-4000:]}")
        return result.stdout

    def state(self, kind: str, *filters: str) -> list[dict[str, Any]]:
        """Ray's state API: `ray list KIND --detail` with `filters` (e.g. "state=ALIVE")."""
        args = ["list", kind, "--address", self.dashboard, "--format", "json", "--detail"]
        args += ["--limit", "10000"]
        for condition in filters:
            args += ["--filter", condition]
        output = self.ray(*args)
        if output.strip() == "No resource in the cluster":  # what `ray list` says for none
            return []
        listed: list[dict[str, Any]] = json.loads(output)
        return listed

    def nodes(self) -> dict[str, str]:
        """The live nodes: node id -> name (head, worker-1, worker-2)."""
        named = {}
        for node in self.state("nodes", "state=ALIVE"):
            for resource, name in NODE_BY_RESOURCE.items():
                if resource in node["resources_total"]:
                    named[node["node_id"]] = name
        return named

    def actors(self, class_name: str) -> list[dict[str, Any]]:
        """The live actors of a class (Serve replicas: `ServeReplica:<app>:<deployment>`)."""
        return self.state("actors", "state=ALIVE", f"class_name={class_name}")

    def serve_status(self) -> dict[str, Any]:
        """`serve status` as a dict."""
        import yaml

        result = subprocess.run(
            [str(SERVE), "status", "--address", self.dashboard],
            env=self.client_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"serve status: {result.stderr[-4000:]}")
        status: dict[str, Any] = yaml.safe_load(result.stdout)
        return status

    def running_replicas(self, app: str, deployment: str) -> int:
        """How many replicas of a deployment run (Serve's status)."""
        states = self.serve_status()["applications"][app]["deployments"][deployment]
        return int(states["replica_states"].get("RUNNING", 0))


@contextmanager
def local_cluster(env: Mapping[str, str], data_dir: Path) -> Iterator[Cluster]:
    """A private stack and cluster with `env` given to every node and the service deployed
    on it (`scripts/cluster up` and `deploy`); taken down and deleted afterwards."""
    with local_stack() as stack:
        # short: the head's Ray temp dir is derived from the port, the rest lives here
        directory = Path(tempfile.mkdtemp(prefix="ml-cluster-", dir="/tmp"))
        port = _free_range()
        http_port = free_ports(1)[0]
        environ = {
            **stack.environ,
            **env,
            "ML_CLUSTER_DIR": str(directory),
            "ML_CLUSTER_PORT": str(port),
            "ML_CLUSTER_HTTP_PORT": str(http_port),
            "ML_DATA_DIR": str(data_dir),
        }
        for key in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
            environ.pop(key, None)
        cluster = Cluster(directory, port, http_port, environ, stack)
        try:
            cluster.run("up")
            cluster.run("deploy")
            yield cluster
        finally:
            try:
                cluster.run("down", timeout=300)
            finally:
                shutil.rmtree(directory, ignore_errors=True)


def _free_range() -> int:
    """A base port whose whole range (see scripts/cluster) is free, in 20000-31000."""
    for base in random.sample(range(20000, 31000 - 400, 100), 40):
        if all(_port_free(base + offset) for offset in _OFFSETS):
            return base
    raise RuntimeError("no free port range for a cluster in 20000-31000")
