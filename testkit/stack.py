"""The local production stack of `scripts/stack` (PostgreSQL, Redis, s3rver) for tests: a
private one per caller, in a temporary ML_STACK_DIR under /tmp on free ports below 32768,
taken down (and checked down) afterwards. The developer's stack in data/stack is never
touched: every command gets this stack's ML_STACK_DIR and ports.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / "scripts" / "stack"
NAMES = ("postgres", "redis", "s3")
BUCKET = "ml-artifacts"


@dataclass
class Stack:
    """One started stack: its folder, ports and the environment its commands run in."""

    directory: Path
    ports: dict[str, int]
    environ: dict[str, str]
    up_output: str = ""

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`scripts/stack ARGS` on this stack (`check`: fail unless it exits 0)."""
        result = subprocess.run(
            [str(STACK), *args],
            env=self.environ,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"scripts/stack {' '.join(args)}: {result.stderr}")
        return result

    def settings(self) -> dict[str, str]:
        """The KEY=value lines of its `stack.env` (the production profile's variables)."""
        lines = (self.directory / "stack.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))

    def status(self) -> tuple[int, dict[str, str]]:
        """`scripts/stack status`: its exit code and each server's state."""
        result = self.run("status", check=False)
        states = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()}
        return result.returncode, states

    def pid(self, name: str) -> int:
        """A running server's pid (from `status`)."""
        result = self.run("status", check=False)
        for line in result.stdout.splitlines():
            words = line.split()
            if words[0] == name and "pid" in words:
                return int(words[words.index("pid") + 1])
        raise RuntimeError(f"{name} is not running: {result.stdout}")

    def s3(self) -> Any:
        """A boto3 S3 client of its s3rver."""
        import boto3

        settings = self.settings()
        return boto3.client(
            "s3",
            endpoint_url=settings["ML_STORAGE__ENDPOINT_URL"],
            aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=settings["AWS_SECRET_ACCESS_KEY"],
            region_name=settings["AWS_DEFAULT_REGION"],
        )

    def redis_cli(self, *args: str) -> str:
        """`redis-cli ARGS` against its Redis; the output, stripped."""
        redis_cli = shutil.which("redis-cli")
        if redis_cli is None:
            raise RuntimeError("scripts/stack up installs redis-server (with redis-cli)")
        result = subprocess.run(
            [redis_cli, "-h", "127.0.0.1", "-p", str(self.ports["redis"]), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return result.stdout.strip()

    def down(self) -> None:
        """Stop every server; raise unless all are stopped and their ports closed."""
        self.run("down", check=False)
        code, states = self.status()
        if code != 3 or set(states.values()) != {"stopped"}:
            raise RuntimeError(f"the stack in {self.directory} is not down: {states}")
        if any(listening(port) for port in self.ports.values()):
            raise RuntimeError(f"a port of the stack is still open: {self.ports}")


@contextmanager
def local_stack() -> Iterator[Stack]:
    """Start a private stack, yield it, then take it down and delete its folder."""
    # Under /tmp (open to the `postgres` user when run as root) and short (a unix socket
    # path must fit in 107 bytes).
    directory = Path(tempfile.mkdtemp(prefix="ml-stack-", dir="/tmp"))
    ports = dict(zip(NAMES, free_ports(3), strict=True))
    environ = {
        **os.environ,
        "ML_STACK_DIR": str(directory),
        "ML_STACK_PG_PORT": str(ports["postgres"]),
        "ML_STACK_REDIS_PORT": str(ports["redis"]),
        "ML_STACK_S3_PORT": str(ports["s3"]),
    }
    stack = Stack(directory, ports, environ)
    try:
        result = stack.run("up")
        stack.up_output = result.stdout + result.stderr
        yield stack
    finally:
        try:
            stack.down()
        finally:
            shutil.rmtree(directory, ignore_errors=True)


def free_ports(count: int) -> list[int]:
    """Distinct free ports in 20000-29999 (below the kernel's outgoing source ports)."""
    candidates = random.sample(range(20000, 30000), 200)
    ports = [port for port in candidates if _port_free(port)][:count]
    if len(ports) != count:
        raise RuntimeError("no free ports in 20000-29999")
    return ports


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port`."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def day_settings(entries: list[dict[str, Any]]) -> dict[str, str]:
    """The service's settings of an e2e day on the stack: the test's token entries, the
    demo feature data, statistics and the prediction log flushed fast, drift evaluated on
    demand (from 50 rows)."""
    return {
        "ML_AUTH__TOKENS": json.dumps(entries),
        "ML_FEATURES__DEMO_DATA": "true",
        "ML_SERVING__STATS_FLUSH_S": "0.2",
        "ML_MONITORING__LOG_FLUSH_S": "0.2",
        "ML_MONITORING__EVALUATE_EVERY_S": "3600",
        "ML_MONITORING__MIN_SAMPLES": "50",
    }
