"""The Serve config of a multi-node cluster: `serve_config.yaml` with `placement.yaml`.

    python deploy/render.py local|kuberay     # prints the YAML

`serve_config.yaml` is the one source of the topology (replicas, autoscaling, CPUs); the
placement overlay adds the custom resources that pin each deployment to its node group
and the per-target fields. scripts/cluster deploys the `local` rendering; the KubeRay
RayService embeds the `kuberay` one (deploy/kuberay_manifests.py keeps it in step).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SERVE_CONFIG = ROOT / "serve_config.yaml"
PLACEMENT = Path(__file__).resolve().parent / "placement.yaml"
TARGETS = ("local", "kuberay")


def _placement() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(PLACEMENT.read_text())
    return loaded


def serve_config(target: str) -> dict[str, Any]:
    """serve_config.yaml with the placement overlay for `target` (local or kuberay)."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
    placement = _placement()
    config: dict[str, Any] = yaml.safe_load(SERVE_CONFIG.read_text())
    for app in config["applications"]:
        wanted = placement["deployments"].get(app["name"], {})
        deployments = {d["name"]: d for d in app.get("deployments", [])}
        unknown = set(wanted) - set(deployments)
        if unknown:
            raise ValueError(
                f"placement.yaml places {sorted(unknown)} of application {app['name']!r}, "
                "which serve_config.yaml does not list"
            )
        for name, resources in wanted.items():
            options = deployments[name].setdefault("ray_actor_options", {})
            options["resources"] = {**options.get("resources", {}), **resources}
    fields = dict(placement["targets"][target])
    overrides = fields.pop("deployments", {})
    for app in config["applications"]:
        for deployment in app.get("deployments", []):
            extra = overrides.get(app["name"], {}).get(deployment["name"])
            if extra:
                deployment.update(_merge(deployment, extra))
    return _merge(config, fields)


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _node_resources() -> dict[str, dict[str, float]]:
    nodes: dict[str, dict[str, float]] = _placement()["nodes"]
    return nodes


def _placement_env() -> dict[str, str]:
    settings: dict[str, dict[str, float]] = _placement()["settings"]
    return {
        f"ML_PLACEMENT__{key.upper()}": json.dumps(value, sort_keys=True)
        for key, value in settings.items()
    }


NODE_RESOURCES = _node_resources()
"""The custom resources each node group declares: head, cpu_workers, gpu_workers."""

PLACEMENT_ENV = _placement_env()
"""The service's placement settings as the environment variables every node gets."""


def main(argv: list[str]) -> int:
    """Print the rendered config (`local`/`kuberay`), or `env`/`nodes` as shell lines."""
    what = argv[0] if argv else ""
    if what == "env":
        for key, value in PLACEMENT_ENV.items():
            sys.stdout.write(f"{key}='{value}'\n")
    elif what == "nodes":
        for group, resources in NODE_RESOURCES.items():
            compact = json.dumps(resources, sort_keys=True, separators=(",", ":"))
            sys.stdout.write(f"{group}='{compact}'\n")
    elif what in TARGETS:
        sys.stdout.write(yaml.safe_dump(serve_config(what), sort_keys=False))
    else:
        sys.stderr.write(f"usage: render.py {'|'.join(TARGETS)}|env|nodes\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
