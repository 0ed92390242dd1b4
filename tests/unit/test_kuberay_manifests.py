"""The KubeRay manifests render offline and validate; planted mistakes are caught.

No cluster and no Ray: `kubectl kustomize` renders, the KubeRay CRDs (../shared) and
kubernetes-validate check the documents, Ray's Serve schema checks serveConfigV2.
"""

from __future__ import annotations

import copy
import functools
import shutil
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from deploy import kuberay_manifests as manifests

Document = dict[str, Any]


def _rendered() -> dict[str, list[Document]]:
    """Every kustomization, rendered once; the tests FAIL (not skip) without kubectl."""
    if shutil.which("kubectl") is None:
        pytest.fail(
            "kubectl is not on PATH: the KubeRay manifests cannot be rendered (kubectl 1.32)"
        )
    return _render_all()


@functools.cache
def _render_all() -> dict[str, list[Document]]:
    return {name: manifests.kustomize(name) for name in manifests.KUSTOMIZATIONS}


def test_every_kustomization_renders_and_validates() -> None:
    rendered = _rendered()
    counted = 0
    for name, documents in rendered.items():
        assert documents, name
        assert manifests.validate(documents) == [], name
        counted += len(documents)
    kinds = sorted({doc["kind"] for docs in rendered.values() for doc in docs})
    print(f"\nvalidated {counted} documents of {len(rendered)} kustomizations: {kinds}")  # noqa: T201
    assert {"RayService", "RayJob", "Secret", "ConfigMap"} <= set(kinds)


def test_prod_has_the_seed_topology() -> None:
    rendered = _rendered()
    service = _one(rendered["overlays/prod"], "RayService")
    cluster = service["spec"]["rayClusterConfig"]
    groups = {group["groupName"]: group for group in cluster["workerGroupSpecs"]}
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "cpu": "4",
        "memory": "8Gi",
    }
    assert (groups["cpu-workers"]["minReplicas"], groups["cpu-workers"]["maxReplicas"]) == (2, 8)
    assert (groups["gpu-workers"]["minReplicas"], groups["gpu-workers"]["maxReplicas"]) == (0, 4)
    gpu = groups["gpu-workers"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu["nvidia.com/gpu"] == 1
    # the placeholder Secrets are never applied to production
    assert not [doc for doc in rendered["overlays/prod"] if doc["kind"] == "Secret"]


def test_committed_serve_config_is_the_rendered_one() -> None:
    committed = yaml.safe_load(manifests.RAYSERVICE.read_text())["spec"]["serveConfigV2"]
    assert yaml.safe_load(committed) == manifests.rendered_serve_config()
    assert manifests.drift() == []


def _worker_group(doc: Document) -> dict[str, Any]:
    group: dict[str, Any] = doc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    return group


def _misspelt_group_field(doc: Document) -> None:
    group = _worker_group(doc)
    group["minReplica"] = group.pop("minReplicas")


def _wrong_type(doc: Document) -> None:
    _worker_group(doc)["maxReplicas"] = "eight"


def _serve_config(doc: Document, change: Callable[[dict[str, Any]], None]) -> None:
    config = yaml.safe_load(doc["spec"]["serveConfigV2"])
    change(config)
    doc["spec"]["serveConfigV2"] = yaml.safe_dump(config, sort_keys=False)


def _model_server(config: dict[str, Any]) -> dict[str, Any]:
    deployments = config["applications"][0]["deployments"]
    server: dict[str, Any] = next(d for d in deployments if d["name"] == "ModelServer")
    return server


def _serve_config_changed(doc: Document) -> None:
    _serve_config(doc, lambda c: _model_server(c)["autoscaling_config"].update(max_replicas=5))


def _serve_field_misspelt(doc: Document) -> None:
    def misspell(config: dict[str, Any]) -> None:
        server = _model_server(config)
        server["max_ongoing_request"] = server.pop("max_ongoing_requests")

    _serve_config(doc, misspell)


def _secret_field_misspelt(doc: Document) -> None:
    doc["stringDatas"] = doc.pop("stringData")


PLANTED = [
    # (what, kind to change, the change, what the message must name)
    ("misspelt worker-group field", "RayService", _misspelt_group_field, "'minReplica'"),
    ("wrong type", "RayService", _wrong_type, "workerGroupSpecs[0].maxReplicas"),
    ("serve config differs", "RayService", _serve_config_changed, "max_replicas"),
    ("misspelt serve field", "RayService", _serve_field_misspelt, "max_ongoing_request:"),
    ("misspelt core field", "Secret", _secret_field_misspelt, "'stringDatas'"),
]


@pytest.mark.parametrize(
    ("kind", "plant", "named"), [p[1:] for p in PLANTED], ids=[p[0] for p in PLANTED]
)
def test_planted_mistakes_are_caught(
    kind: str, plant: Callable[[Document], None], named: str
) -> None:
    documents = copy.deepcopy(_rendered()["overlays/dev"])
    plant(_one(documents, kind))
    errors = manifests.validate(documents)
    print(f"\n{plant.__name__}: {errors}")  # noqa: T201
    assert errors, plant.__name__
    assert any(named in error and error.startswith(f"{kind}/") for error in errors), errors


def test_a_stale_serve_config_block_is_rewritten(tmp_path: Any, monkeypatch: Any) -> None:
    copy_ = tmp_path / "rayservice.yaml"
    text = manifests.RAYSERVICE.read_text()
    copy_.write_text(text.replace("max_replicas: 2", "max_replicas: 7", 1))
    env = tmp_path / "placement.env"
    env.write_text(manifests.PLACEMENT_ENV.read_text())
    monkeypatch.setattr(manifests, "RAYSERVICE", copy_)
    monkeypatch.setattr(manifests, "PLACEMENT_ENV", env)
    assert any("max_replicas: 7, rendered 2" in error for error in manifests.drift())
    assert manifests.write() == [copy_]
    assert copy_.read_text() == text
    assert manifests.drift() == []


def _one(documents: list[Document], kind: str) -> Document:
    (document,) = [doc for doc in documents if doc["kind"] == kind][:1]
    return document
