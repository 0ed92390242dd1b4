"""The KubeRay manifests (deploy/kuberay): regenerated from the topology, validated offline.

    python deploy/kuberay_manifests.py write   # rewrite serveConfigV2 and placement.env
    python deploy/kuberay_manifests.py check   # exit 1, naming each stale or invalid field

`write` puts deploy/render.py's `serve_config("kuberay")` into the base RayService's
serveConfigV2 block (the rest of that file is edited by hand) and the placement settings
into base/placement.env (the ConfigMap every Ray container reads).

`check` renders every kustomization with `kubectl kustomize` (offline) and validates each
document (`validate`): ray.io kinds strictly against KubeRay's CRD schemas (read at run time
from $ML_KUBERAY_CRDS, by default ../shared/kuberay/crds-v1.7.0; an unknown field is an
error), core kinds with kubernetes-validate in strict mode, the embedded Serve config with
Ray's ServeDeploySchema (unknown fields are errors too) and against serve_config.yaml, and
each Ray group's custom resources and the placement variables against placement.yaml.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any, get_args

import jsonschema  # type: ignore[import-untyped]  # no stubs installed
import kubernetes_validate  # type: ignore[import-untyped]
import yaml
from pydantic import BaseModel, ValidationError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if __package__ in (None, ""):  # run as a script: make `deploy` importable
    sys.path.insert(0, str(ROOT))
from deploy import render  # noqa: E402

KUBERAY = HERE / "kuberay"
RAYSERVICE = KUBERAY / "base" / "rayservice.yaml"
PLACEMENT_ENV = KUBERAY / "base" / "placement.env"
KUSTOMIZATIONS = ("base", "overlays/dev", "overlays/prod", "jobs")
CRDS_VARIABLE = "ML_KUBERAY_CRDS"
DEFAULT_CRDS = ROOT.parent / "shared" / "kuberay" / "crds-v1.7.0"
KUBERNETES_VERSION = "1.32"  # the oldest cluster version the manifests must pass on
CONFIG_MAP = "ml-service-config"
# Ray node groups (RayService/RayJob) -> the node kinds of deploy/placement.yaml `nodes`.
NODE_OF_GROUP = {
    "headGroupSpec": "head",
    "cpu-workers": "cpu_workers",
    "gpu-workers": "gpu_workers",
}
_SERVE_BLOCK = re.compile(
    r"^(?P<indent> *)serveConfigV2: \|[-+]?\n(?P<body>(?:(?P=indent)  .*\n|\n)*)", re.M
)


def rendered_serve_config() -> dict[str, Any]:
    """The Serve config the RayService must embed: serve_config.yaml placed for KubeRay."""
    return render.serve_config("kuberay")


def kustomize(name: str) -> list[dict[str, Any]]:
    """The documents of one kustomization under deploy/kuberay (`base`, `overlays/prod`, ...)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RuntimeError("kubectl is not on PATH: it renders the kustomizations")
    done = subprocess.run(
        [kubectl, "kustomize", str(KUBERAY / name)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {KUBERAY / name} failed: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


# --- write and check the generated parts ----------------------------------------------


def write() -> list[Path]:
    """Regenerate serveConfigV2 and placement.env; return the files that changed."""
    changed = []
    body = yaml.safe_dump(rendered_serve_config(), sort_keys=False)
    text = RAYSERVICE.read_text()
    match = _SERVE_BLOCK.search(text)
    if match is None:
        raise RuntimeError(f"{RAYSERVICE}: no `serveConfigV2: |` block to rewrite")
    indent = match["indent"] + "  "
    block = "".join(f"{indent}{line}\n" if line else "\n" for line in body.splitlines())
    new = f"{text[: match.start()]}{match['indent']}serveConfigV2: |\n{block}{text[match.end() :]}"
    for path, content in ((RAYSERVICE, new), (PLACEMENT_ENV, _placement_env_text())):
        if path.read_text() != content:
            path.write_text(content)
            changed.append(path)
    return changed


def _placement_env_text() -> str:
    lines = [f"{key}={value}" for key, value in sorted(render.PLACEMENT_ENV.items())]
    header = (
        "# GENERATED from deploy/placement.yaml by `python deploy/kuberay_manifests.py write`.\n"
    )
    return header + "".join(f"{line}\n" for line in lines)


def drift() -> list[str]:
    """Where the committed generated parts differ from what `write` would produce."""
    errors = []
    committed = yaml.safe_load(RAYSERVICE.read_text())["spec"]["serveConfigV2"]
    for difference in _differences(yaml.safe_load(committed), rendered_serve_config(), "$"):
        errors.append(f"{_shown(RAYSERVICE)}: serveConfigV2 {difference}")
    if not PLACEMENT_ENV.exists() or PLACEMENT_ENV.read_text() != _placement_env_text():
        errors.append(f"{_shown(PLACEMENT_ENV)}: differs from deploy/placement.yaml")
    return [f"{error} (run `python deploy/kuberay_manifests.py write`)" for error in errors]


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def check() -> list[str]:
    """Every problem with the manifests: stale generated parts, then invalid documents."""
    errors = drift()
    for name in KUSTOMIZATIONS:
        errors += [f"{name}: {error}" for error in validate(kustomize(name))]
    return errors


# --- validation --------------------------------------------------------------------------


def validate(documents: Iterable[Mapping[str, Any]]) -> list[str]:
    """Error messages (`Kind/name: $.json.path: problem`) for rendered manifest documents."""
    errors = []
    for document in documents:
        metadata = document.get("metadata") or {}
        where = f"{document.get('kind')}/{metadata.get('name')}"
        errors += [f"{where}: {error}" for error in _document_errors(document)]
    return errors


def _document_errors(document: Mapping[str, Any]) -> Iterator[str]:
    if str(document.get("apiVersion", "")).startswith("ray.io/"):
        yield from _crd_errors(document)
        yield from _placement_errors(document)
        serve_config = (document.get("spec") or {}).get("serveConfigV2")
        if document.get("kind") == "RayService" and isinstance(serve_config, str):
            yield from _serve_config_errors(serve_config)
        return
    yield from _core_errors(document)
    if document.get("kind") == "ConfigMap" and document["metadata"].get("name") == CONFIG_MAP:
        data = document.get("data") or {}
        for key, value in sorted(render.PLACEMENT_ENV.items()):
            if data.get(key) != value:
                yield f"$.data.{key}: {data.get(key)!r}, placement.yaml gives {value!r}"


def _crd_errors(document: Mapping[str, Any]) -> Iterator[str]:
    validators = _crd_validators()
    key = (str(document.get("kind")), str(document.get("apiVersion")))
    if key not in validators:
        known = ", ".join(f"{k} {v}" for k, v in sorted(validators))
        yield f"$.apiVersion: {' '.join(key)} is no served storage version of ({known})"
        return
    for error in validators[key].iter_errors(document):
        yield f"{error.json_path}: {error.message}"


@cache
def _crd_validators() -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    directory = Path(os.environ.get(CRDS_VARIABLE, DEFAULT_CRDS))
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise RuntimeError(f"no KubeRay CRDs in {directory} (set ${CRDS_VARIABLE})")
    validators = {}
    for path in files:
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served") and version.get("storage"):
                schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                validators[kind, f"{group}/{version['name']}"] = jsonschema.Draft7Validator(schema)
    return validators


def _strict(node: Any) -> Any:
    """A structural schema as JSON Schema: unknown fields refused, Kubernetes markers mapped."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _strict(value) for key, value in node.items()}
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if "properties" in node and "additionalProperties" not in node and not preserve:
        node["additionalProperties"] = False
    if node.get("x-kubernetes-int-or-string") is True:
        node.pop("type", None)
        node.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") is True and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    return node


def _core_errors(document: Mapping[str, Any]) -> Iterator[str]:
    try:
        kubernetes_validate.validate(dict(document), KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        yield f"{error.json_path}: {error.message}"
    except kubernetes_validate.SchemaNotFoundError as error:
        yield f"$.kind: {error.message}"


def _placement_errors(document: Mapping[str, Any]) -> Iterator[str]:
    """Each Ray group declares the custom resources placement.yaml gives its node kind."""
    spec = document.get("spec") or {}
    for field in ("rayClusterConfig", "rayClusterSpec"):
        cluster = spec.get(field)
        if isinstance(cluster, dict):
            yield from _group_errors(cluster, f"$.spec.{field}")


def _group_errors(cluster: Mapping[str, Any], path: str) -> Iterator[str]:
    groups: list[tuple[str, Any, Any]] = [
        (f"{path}.headGroupSpec", "headGroupSpec", cluster.get("headGroupSpec"))
    ]
    workers = cluster.get("workerGroupSpecs")
    for index, group in enumerate(workers if isinstance(workers, list) else []):
        name = group.get("groupName") if isinstance(group, dict) else None
        groups.append((f"{path}.workerGroupSpecs[{index}]", name, group))
    for where, name, group in groups:
        if not isinstance(group, dict):
            continue
        node = NODE_OF_GROUP.get(str(name))
        if node is None:
            known = [group for group in NODE_OF_GROUP if group != "headGroupSpec"]
            yield f"{where}.groupName: {name!r} is none of the node groups {known}"
            continue
        declared = _start_resources(group.get("rayStartParams"))
        expected = render.NODE_RESOURCES[node]
        if declared != expected:
            yield (
                f"{where}.rayStartParams.resources: declares {declared}, "
                f"placement.yaml gives {node} {expected}"
            )


def _start_resources(params: Any) -> Any:
    """rayStartParams.resources: KubeRay puts it into a shell command line unquoted, hence
    the shell quoting of the JSON ('"{\\"ml_head\\": 1000}"' in YAML)."""
    text = params.get("resources") if isinstance(params, dict) else None
    if not isinstance(text, str):
        return text
    try:
        words = shlex.split(text)
        return json.loads(words[0]) if len(words) == 1 else text
    except (ValueError, json.JSONDecodeError):
        return text


def _serve_config_errors(text: str) -> Iterator[str]:
    from ray.serve.schema import ServeDeploySchema  # imports Serve's schema only; starts nothing

    path = "$.spec.serveConfigV2"
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        yield f"{path}: not YAML: {error}"
        return
    if not isinstance(config, dict):
        yield f"{path}: not a mapping"
        return
    yield from _unknown_fields(ServeDeploySchema, config, path)
    yield from _model_errors(ServeDeploySchema, config, path)
    for difference in _differences(config, rendered_serve_config(), path):
        yield f"{difference} (serve_config.yaml + placement.yaml; run kuberay_manifests.py write)"


def _model_errors(model: type[BaseModel], data: Any, path: str) -> Iterator[str]:
    try:
        model.model_validate(data)
    except ValidationError as error:
        for item in error.errors():
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"])
            yield f"{path}{where}: {item['msg']} (Ray's {model.__name__})"


def _unknown_fields(model: type[BaseModel], data: Mapping[str, Any], path: str) -> Iterator[str]:
    """Ray's Serve schemas ignore unknown keys (pydantic's default): here they are errors."""
    fields = {}
    for name, info in model.model_fields.items():
        fields[name] = info.annotation
        if info.alias:
            fields[info.alias] = info.annotation
    for key, value in data.items():
        if key not in fields:
            yield f"{path}.{key}: unknown field of Ray's {model.__name__}"
        else:
            yield from _nested_fields(fields[key], value, f"{path}.{key}")


def _nested_fields(annotation: Any, value: Any, path: str) -> Iterator[str]:
    models = _models_in(annotation)
    if isinstance(value, list):
        for index, item in enumerate(value):
            label = item.get("name", index) if isinstance(item, dict) else index
            yield from _nested_fields(annotation, item, f"{path}[{label}]")
    elif isinstance(value, dict) and len(models) == 1:
        yield from _unknown_fields(models[0], value, path)
        if dict in get_args(annotation) or any(a is dict for a in _origins(annotation)):
            # `Dict | Model` fields pass any dict through Ray's schema: check the model too.
            yield from _model_errors(models[0], value, path)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _origins(annotation: Any) -> list[Any]:
    return [getattr(arg, "__origin__", arg) for arg in get_args(annotation)]


def _differences(committed: Any, rendered: Any, path: str) -> Iterator[str]:
    """Paths where `committed` differs from `rendered`; list items named by their `name`."""
    if isinstance(committed, dict) and isinstance(rendered, dict):
        for key in [*rendered, *(k for k in committed if k not in rendered)]:
            if key not in committed:
                yield f"{path}.{key}: missing (rendered: {rendered[key]!r})"
            elif key not in rendered:
                yield f"{path}.{key}: not in the rendered config ({committed[key]!r})"
            else:
                yield from _differences(committed[key], rendered[key], f"{path}.{key}")
    elif isinstance(committed, list) and isinstance(rendered, list):
        if len(committed) != len(rendered):
            yield f"{path}: {len(committed)} items, rendered {len(rendered)}"
        for index, (mine, theirs) in enumerate(zip(committed, rendered, strict=False)):
            label = theirs.get("name", index) if isinstance(theirs, dict) else index
            yield from _differences(mine, theirs, f"{path}[{label}]")
    elif committed != rendered:
        yield f"{path}: {committed!r}, rendered {rendered!r}"


def main(argv: list[str]) -> int:
    """`write` or `check` (see the module docstring)."""
    command = argv[0] if argv else ""
    if command == "write":
        for path in write():
            print(f"wrote {_shown(path)}")  # noqa: T201
        return 0
    if command == "check":
        errors = check()
        for error in errors:
            print(error, file=sys.stderr)  # noqa: T201
        count = f"{len(errors)} problem(s)" if errors else "the manifests are valid"
        print(f"kuberay manifests: {count}", file=sys.stderr)  # noqa: T201
        return 1 if errors else 0
    print("usage: kuberay_manifests.py write|check", file=sys.stderr)  # noqa: T201
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
