"""The `ml` application in a fresh local Ray cluster, for the benchmarks that measure it."""

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class RunningApp:
    """The app's base URL, its data directory and a token per role."""

    base: str
    workdir: Path
    tokens: Any  # testkit.auth.Tokens


def start_ml_app(prefix: str) -> RunningApp:
    """Start Ray (4 logical CPUs) and Serve on a free port, then the `ml` application as
    `serve_config.yaml`'s builder makes it, on a temporary data directory."""
    import ray
    from ray import serve

    from deployments.builder import AppArgs, build_ml_app
    from testkit.auth import Tokens
    from testkit.service import free_port, haproxy_side_ports, wait_routed
    from testkit.settings import CONFIGS

    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-"))
    tokens = Tokens()
    os.environ.update(
        {
            "ML_DATA_DIR": str(workdir / "data"),
            "ML_LOG_LEVEL": "WARNING",
            "ML_AUTH__TOKENS": json.dumps(tokens.entries()),
            # the ingress scripts/serve ships: Serve's HAProxy in front of the replicas
            "RAY_SERVE_ENABLE_HA_PROXY": os.environ.get("RAY_SERVE_ENABLE_HA_PROXY", "1"),
            **haproxy_side_ports(),
        }
    )
    ray.init(
        address="local",
        num_cpus=4,
        include_dashboard=False,
        logging_level="ERROR",
        _temp_dir=tempfile.mkdtemp(prefix="ray-bench-", dir="/tmp"),
    )
    port = free_port()
    serve.start(
        http_options={"host": "127.0.0.1", "port": port},
        logging_config={"log_level": "WARNING", "enable_access_log": False},
    )
    serve.run(build_ml_app(AppArgs(config_dir=str(CONFIGS))), name="ml", route_prefix="/")
    wait_routed(f"http://127.0.0.1:{port}")
    return RunningApp(f"http://127.0.0.1:{port}", workdir, tokens)
