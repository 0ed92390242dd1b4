"""Start and stop the service exactly as the README does (`scripts/serve`), on a free port."""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger(__name__)


def free_port(low: int = 20000, high: int = 29999) -> int:
    """A free loopback port for a server: below 32768 (the kernel hands out 32768-60999 as
    outgoing source ports, and a server there can lose its port to a client connection)
    and outside the HAProxy ingress replicas' ports (30000-31000)."""
    for _ in range(200):
        port = random.randint(low, high)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


def start_serve(port: int, **options: Any) -> None:
    """`serve.start` on `port` (loopback), where the proxy may take longer than Ray waits.

    `serve.start` gives up after Ray's fixed 60 s (`HTTP_PROXY_TIMEOUT`) when the proxy is
    not ready, and fails when the controller kills a first proxy that missed its readiness
    checks (`testkit.ingress.PROXY_READY_ENVIRON` makes that rarer). Both were seen on a
    loaded 2-core machine. Serve's controller is running then and goes on starting a proxy
    on `port`, so the start is asked once more: it connects to that controller (with the
    same options) instead of starting another. The caller then waits for its route
    (`wait_routed`)."""
    import ray
    from ray import serve

    http_options = {"host": "127.0.0.1", "port": port}
    try:
        serve.start(http_options=http_options, **options)
    except (TimeoutError, ray.exceptions.RayActorError) as exc:
        log.warning("serve.start: %s Connecting to the controller it started.", exc)
        serve.start(http_options=http_options, **options)


def _handle_sigint() -> None:
    """SIGINT handled in this process, where it is ignored, so that `scripts/serve` starts
    with its default. A suite run as a shell's background job (`cmd &`, `nohup`) starts
    with SIGINT ignored, a child inherits that, and Python then installs no
    KeyboardInterrupt handler: `serve run` never saw `stop`'s Ctrl-C and was killed after
    the 90 s grace (five times per e2e stage). A handler, unlike an ignored signal, is not
    inherited across exec (Popen's `preexec_fn` would do it in the child, but is unsafe
    in a process with threads, as a test's is)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def haproxy_side_ports() -> dict[str, str]:
    """HAProxy's stats and metrics ports for one more cluster on this host: Ray's defaults
    (8404, 9101) are fixed, and a developer's own running service may hold them."""
    return {
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
    }


def wait_routed(
    url: str, paths: tuple[str, ...] = ("/api/v1/ml/health/live",), timeout_s: float = 120
) -> None:
    """Wait until the HTTP ingress routes to the apps: `serve.run` returns when the replicas
    are up, while HAProxy picks up a new port or route a moment later."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if all(httpx.get(url + path, timeout=5).status_code == 200 for path in paths):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} does not route {paths} after {timeout_s}s")
        time.sleep(0.5)


class Service:
    """One `scripts/serve` process group, with its own port and data directory."""

    def __init__(self, workdir: Path, model_server_replicas: int | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = workdir / "data"
        self.config = workdir / "serve_config.yaml"
        config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
        config["http_options"]["port"] = self.port
        if model_server_replicas is not None:
            for app in config["applications"]:
                for deployment in app.get("deployments", []):
                    if deployment["name"] == "ModelServer":
                        deployment.pop("autoscaling_config", None)
                        deployment["num_replicas"] = model_server_replicas
        self.config.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "serve.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, extra_env: dict[str, str] | None = None, timeout_s: float = 300) -> None:
        _handle_sigint()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ML_", "RAY_"))}
        env.update({"ML_DATA_DIR": str(self.data_dir), **haproxy_side_ports(), **(extra_env or {})})
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [str(ROOT / "scripts" / "serve"), str(self.config)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, stopped like Ctrl-C would
        )
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        paths = ["/api/v1/ml/health", "/mlflow/health"]
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"scripts/serve exited early:\n{self.log()[-5000:]}")
            try:
                if all(httpx.get(self.url + p, timeout=5).status_code == 200 for p in paths):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"service not ready after {timeout_s}s:\n{self.log()[-5000:]}")

    def stop(self, timeout_s: float = 90) -> None:
        """Ctrl-C to the whole process group, then SIGKILL if it lingers."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        # Ray's workers start processes of their own (Serve's haproxy) that can outlive
        # the process group: every descendant is known now and stopped at the end
        descendants = _descendants(process.pid)
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _group_alive(process.pid):
            time.sleep(0.5)
        if _group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        for survivor in descendants:
            try:
                survivor.kill()
            except psutil.Error:  # gone already (or another owner's reused pid: not ours)
                pass

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def register_staged(http: httpx.Client, model: str, run_id: str) -> int:
    """Register a run's model and promote it to staging (its validation runs): only
    staging and production versions take live traffic. `http` carries an engineer's
    token and the service's base URL."""
    registered = http.post("/api/v1/ml/models", json={"name": model, "run_id": run_id})
    registered.raise_for_status()
    version = int(registered.json()["version"])
    promoted = http.post(
        f"/api/v1/ml/models/{model}/promote", json={"version": version, "to": "staging"}
    )
    if promoted.status_code != 200:
        raise RuntimeError(promoted.text)
    return version
