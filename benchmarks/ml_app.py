"""The `ml` application in a fresh local Ray cluster, for the benchmarks that measure it,
on the embedded defaults or on the production profile's stores (a private local stack)."""

import argparse
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROFILES = {
    "embedded": "embedded defaults: SQLite, local files, Feast's SQLite online store",
    "prod": "production profile (ML_ENV=prod) on a private local stack: PostgreSQL, "
    "S3 (s3rver), Feast's SQL registry and Redis online store",
}
# Lines of the stack's stack.env that belong to the service `scripts/serve` starts on it,
# not to this one (its own data directory and tokens).
_NOT_FROM_STACK = {
    "ML_DATA_DIR",
    "ML_AUTH__BOOTSTRAP_ADMIN_TOKEN",
    "ML_MLFLOW__ALLOWED_HOSTS",
}


@dataclass
class RunningApp:
    """The app's base URL, its data directory, a token per role, and the settings it runs
    with (as its builder loaded them)."""

    base: str
    workdir: Path
    tokens: Any  # testkit.auth.Tokens
    settings: Any  # app.settings.Settings
    profile: str = "embedded"

    def header(self) -> str:
        """The line naming the profile this run measured."""
        return f"profile: {self.profile} ({PROFILES[self.profile]})"


def add_profile_option(parser: argparse.ArgumentParser) -> None:
    """`--profile embedded|prod` (default embedded)."""
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="embedded",
        help="the service's stores: embedded defaults, or the production profile on a "
        "private local stack (testkit.stack)",
    )


@contextmanager
def running_ml_app(prefix: str, profile: str = "embedded") -> Iterator[RunningApp]:
    """`start_ml_app` on `profile`'s stores; Serve, Ray and (prod) the stack are stopped
    afterwards, also on errors."""
    import ray
    from ray import serve

    with _stores(profile) as environ:
        try:
            yield start_ml_app(prefix, environ, profile)
        finally:
            if ray.is_initialized():
                serve.shutdown()
            ray.shutdown()


@contextmanager
def _stores(profile: str) -> Iterator[dict[str, str]]:
    """The environment of `profile`'s stores: none for the embedded defaults; for prod,
    a private local stack's settings, taken down when the block ends."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (known: {', '.join(sorted(PROFILES))})")
    if profile == "embedded":
        yield {}
        return
    from testkit.stack import local_stack

    with local_stack() as stack:
        stores = {
            key: value
            for key, value in stack.settings().items()
            if key not in _NOT_FROM_STACK and not key.startswith("ML_STACK_")
        }
        yield {**stores, "ML_ENV": "prod", "ML_FEATURES__DEMO_DATA": "true"}


def start_ml_app(
    prefix: str, environ: dict[str, str] | None = None, profile: str = "embedded"
) -> RunningApp:
    """Start Ray (4 logical CPUs) and Serve on a free port, then the `ml` application as
    `serve_config.yaml`'s builder makes it, with the file's deployment options, on a
    temporary data directory, with `environ` (the stores' settings) on top. The variables
    are set in this process before Ray starts, so the cluster's workers inherit them."""
    import ray
    from ray import serve

    from app.settings import load_settings
    from deployments.builder import AppArgs, build_ml_app
    from testkit.auth import Tokens
    from testkit.ingress import PROXY_READY_ENVIRON, haproxy_state_environ, with_shipped_options
    from testkit.service import free_port, haproxy_side_ports, start_serve, wait_routed
    from testkit.settings import CONFIGS

    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-"))
    tokens = Tokens()
    os.environ.update(
        {
            **(environ or {}),
            "ML_DATA_DIR": str(workdir / "data"),
            "ML_LOG_LEVEL": "WARNING",
            "ML_AUTH__TOKENS": json.dumps(tokens.entries()),
            # the ingress scripts/serve ships: Serve's HAProxy in front of the replicas
            "RAY_SERVE_ENABLE_HA_PROXY": os.environ.get("RAY_SERVE_ENABLE_HA_PROXY", "1"),
            **PROXY_READY_ENVIRON,
            # a short path: HAProxy's admin socket goes in <dir>/<node id>/admin.sock
            **haproxy_state_environ(Path(tempfile.mkdtemp(prefix="hap-", dir="/tmp"))),
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
    start_serve(port, logging_config={"log_level": "WARNING", "enable_access_log": False})
    app = with_shipped_options(build_ml_app(AppArgs(config_dir=str(CONFIGS))), "ml")
    serve.run(app, name="ml", route_prefix="/")
    wait_routed(f"http://127.0.0.1:{port}")
    settings = load_settings(CONFIGS)  # the layer of ML_ENV, as the builder's
    return RunningApp(f"http://127.0.0.1:{port}", workdir, tokens, settings, profile)
