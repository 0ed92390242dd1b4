"""Export a registered MLflow PyTorch model into a Triton model repository.

The version's network is traced to TorchScript on its input example and written as
`<repository>/<name>/1/model.pt` with a generated `config.pbtxt` (dynamic batching on):
for the Python backend (what the locally bundled Triton has, with `model.py` running the
file), or for Triton's native libtorch backend (production images). Inputs are one FP32
tensor `INPUT__0` of the model's features in the signature's order; the output is
`OUTPUT__0`.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import ErrorCode, InvalidInput, NotFound, first_line

log = logging.getLogger(__name__)

_PYTHON_MODEL = Path(__file__).resolve().parent / "triton_python_model.py"


@dataclass(frozen=True)
class ExportedModel:
    """What the service needs to call an exported version."""

    triton_name: str
    features: int
    columns: tuple[str, ...] | None  # the signature's column names (None: a tensor input)
    output_dims: tuple[int, ...]


@dataclass(frozen=True)
class RepositoryOptions:
    """How models are configured in the repository."""

    native_backend: bool = False
    instance_kind: str = "KIND_CPU"
    instances: int = 1
    max_batch_size: int = 64
    max_queue_delay_us: int = 500


def triton_name(model: str, version: int) -> str:
    """The Triton model name of a registered version (Triton allows [A-Za-z0-9_.-])."""
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', model)}__v{version}"


def export_version(
    tracking_uri: str, model: str, version: int, repository: Path, options: RepositoryOptions
) -> ExportedModel:
    """Export `models:/<model>/<version>` (idempotent: an existing export is reused).

    Raises:
        NotFound: the registry has no such version.
        InvalidInput: the version is not a PyTorch model with an input example or a
            tensor signature (field `backend`).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    uri = f"models:/{model}/{version}"
    with tempfile.TemporaryDirectory(prefix="triton-export-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise NotFound(
                    ErrorCode.MODEL_VERSION_NOT_FOUND,
                    f"Model {model!r} has no version {version}.",
                    model=model,
                    version=version,
                ) from None
            raise
        return _export(local, model, version, repository, options)


def _export(
    local: Path, model: str, version: int, repository: Path, options: RepositoryOptions
) -> ExportedModel:
    import mlflow
    import numpy as np
    import torch
    from mlflow.models import Model

    name = triton_name(model, version)
    target = repository / name
    meta = Model.load(str(local))
    if "pytorch" not in meta.flavors:
        raise _not_exportable(model, version, "only PyTorch models export to Triton")
    schema = meta.get_input_schema()
    if schema is None:
        raise _not_exportable(model, version, "the model has no input signature")
    columns = tuple(schema.input_names()) if not schema.is_tensor_spec() else None
    example: Any = meta.load_input_example(str(local))
    if example is not None:
        array = np.asarray(
            example[list(columns)] if columns and hasattr(example, "columns") else example,
            dtype=np.float32,
        )
    elif schema.is_tensor_spec():
        shape = [1 if d == -1 else d for d in schema.inputs[0].shape]
        array = np.zeros(shape, dtype=np.float32)
    else:
        array = np.zeros((1, len(columns or ())), dtype=np.float32)
    if array.ndim != 2:
        raise _not_exportable(model, version, "only models on rows of numeric features export")
    sample = torch.from_numpy(array[:2])
    try:
        network = _network(mlflow.pytorch.load_model(str(local)))
        with torch.no_grad():
            output = network(sample)
            traced = torch.jit.trace(network, sample, check_trace=True)
    except Exception as exc:
        log.warning("cannot export %s version %d: %s", model, version, exc)
        why = f"TorchScript tracing failed ({first_line(exc, 200)})"
        raise _not_exportable(model, version, why) from None
    if not isinstance(output, torch.Tensor):
        raise _not_exportable(model, version, "the network does not return one tensor")
    exported = ExportedModel(name, int(array.shape[1]), columns, tuple(output.shape[1:]))
    if (target / "config.pbtxt").exists():
        return exported
    if target.exists():  # a partial copy (an interrupted publish): exported again
        shutil.rmtree(target, ignore_errors=True)
    staging = repository / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    (staging / "1").mkdir(parents=True)
    traced.save(str(staging / "1" / "model.pt"))
    if not options.native_backend:
        shutil.copyfile(_PYTHON_MODEL, staging / "1" / "model.py")
    (staging / "config.pbtxt").write_text(config_pbtxt(exported, options))
    try:
        staging.rename(target)
    except OSError:  # another replica exported it meanwhile
        shutil.rmtree(staging, ignore_errors=True)
    log.info("exported %s version %d to %s", model, version, target)
    return exported


def _network(loaded: Any) -> Any:
    """The network to trace: MLflow gives the exported graph (already an inference graph,
    which refuses `eval()`) for models logged in its pt2 format, and the module itself for
    pickled ones (put in eval mode)."""
    import torch

    if isinstance(loaded, torch.export.ExportedProgram):
        return loaded.module()
    if isinstance(loaded, torch.fx.GraphModule):
        return loaded
    return loaded.eval()


def config_pbtxt(model: ExportedModel, options: RepositoryOptions) -> str:
    """Triton's model configuration for an exported version."""
    backend = 'platform: "pytorch_libtorch"' if options.native_backend else 'backend: "python"'
    output_dims = list(model.output_dims) or [1]
    reshape = "\n    reshape: { shape: [ ] }" if not model.output_dims else ""
    return f"""name: "{model.triton_name}"
{backend}
max_batch_size: {options.max_batch_size}
input [
  {{
    name: "INPUT__0"
    data_type: TYPE_FP32
    dims: [ {model.features} ]
  }}
]
output [
  {{
    name: "OUTPUT__0"
    data_type: TYPE_FP32
    dims: [ {", ".join(str(d) for d in output_dims)} ]{reshape}
  }}
]
dynamic_batching {{
  max_queue_delay_microseconds: {options.max_queue_delay_us}
}}
instance_group [
  {{
    kind: {options.instance_kind}
    count: {options.instances}
  }}
]
"""


def _not_exportable(model: str, version: int, why: str) -> InvalidInput:
    return InvalidInput.for_field(
        "backend", f"version {version} of {model!r} cannot run on Triton: {why}"
    )
