"""Placement on a cluster: the settings every node gets from deploy/placement.yaml, and what
the service's Ray work asks for with them."""

from __future__ import annotations

import json

import pytest

from app.jobs.spec import ScalingSpec
from app.jobs.train import worker_resources
from app.settings import PlacementSettings, load_settings
from deploy import render
from testkit.stack import ROOT


def test_every_node_gets_the_placement_settings_of_placement_yaml(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in render.PLACEMENT_ENV.items():
        monkeypatch.setenv(key, value)
    placement = load_settings(ROOT / "configs", "prod").placement
    assert placement.state_actors == {"ml_head": 0.001}
    assert placement.training_workers == {"ml_worker": 0.001}
    assert placement.gpu_training_workers == {"ml_gpu_worker": 0.001}
    assert placement.batch_workers == {"ml_worker": 0.001}
    # each resource asked for is one some node group declares
    declared = {name for group in render.NODE_RESOURCES.values() for name in group}
    asked = {name for value in render.PLACEMENT_ENV.values() for name in json.loads(value)}
    assert asked <= declared, asked - declared


def test_one_node_asks_for_no_custom_resource() -> None:
    assert load_settings(ROOT / "configs", "dev").placement == PlacementSettings()
    assert worker_resources(ScalingSpec(cpus_per_worker=0.5), PlacementSettings()) == {"CPU": 0.5}


def test_training_workers_ask_for_their_node_group() -> None:
    placement = PlacementSettings(
        training_workers={"ml_worker": 0.001}, gpu_training_workers={"ml_gpu_worker": 0.001}
    )
    cpu = worker_resources(ScalingSpec(cpus_per_worker=1), placement)
    assert cpu == {"CPU": 1, "ml_worker": 0.001}
    gpu = worker_resources(
        ScalingSpec(use_gpu=True, gpus_per_worker=1, cpus_per_worker=2), placement
    )
    assert gpu == {"CPU": 2, "GPU": 1, "ml_gpu_worker": 0.001}  # on the GPU group, with a GPU


def test_the_rendered_serve_config_pins_deployments_to_their_groups() -> None:
    for target in render.TARGETS:
        apps = {a["name"]: a for a in render.serve_config(target)["applications"]}
        ml = {d["name"]: d for d in apps["ml"]["deployments"]}
        assert ml["ModelServer"]["ray_actor_options"]["resources"] == {"ml_worker": 0.001}
        assert ml["ModelServer"]["ray_actor_options"]["num_cpus"] == 0.5  # serve_config.yaml's
        assert "resources" not in ml["Ingress"]["ray_actor_options"]
        assert ml["Ingress"]["max_replicas_per_node"] == 1
        mlflow = apps["mlflow"]["deployments"][0]
        assert mlflow["ray_actor_options"]["resources"] == {"ml_head": 0.001}
    assert render.serve_config("local")["proxy_location"] == "HeadOnly"
    assert render.serve_config("kuberay")["proxy_location"] == "EveryNode"
    with pytest.raises(ValueError, match="target"):
        render.serve_config("laptop")
