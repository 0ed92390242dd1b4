"""Automated validation of a model version, run as a Ray task.

The steps: the artifact downloads, it has a signature and an input example, it loads as
an MLflow pyfunc model, it predicts on its input example, and the prediction matches its
output signature (MLflow's own `validate_schema`). The first failing step ends the run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Callable
from typing import Any

import ray

from app.core.gates import ValidationReport
from app.errors import ErrorCode, Unavailable
from app.settings import redact

log = logging.getLogger(__name__)


def validate_model(tracking_uri: str, model_uri: str) -> ValidationReport:
    """Run every validation step in this process (a Ray worker, normally)."""
    import mlflow
    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model, validate_schema

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(tracking_uri)
    steps: list[tuple[str, bool, str]] = []
    state: dict[str, Any] = {}

    def step(name: str, action: Callable[[], str]) -> bool:
        try:
            steps.append((name, True, action()))
            return True
        except Exception as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0][:300]
            steps.append((name, False, redact(f"{type(exc).__name__}: {first_line}")))
            return False

    def has_signature() -> str:
        state["meta"] = Model.load(state["local"])
        if state["meta"].signature is None or state["meta"].signature.outputs is None:
            raise ValueError("the model has no input/output signature")
        return str(state["meta"].signature.outputs)

    def has_example() -> str:
        state["example"] = state["meta"].load_input_example(state["local"])
        if state["example"] is None:
            raise ValueError("the model was logged without an input example")
        return type(state["example"]).__name__

    def loads() -> str:
        state["model"] = mlflow.pyfunc.load_model(state["local"])
        return str(state["meta"].flavors.keys())

    def predicts() -> str:
        state["output"] = state["model"].predict(state["example"])
        return type(state["output"]).__name__

    def matches() -> str:
        validate_schema(state["output"], state["meta"].signature.outputs)
        return "output conforms to the signature"

    with tempfile.TemporaryDirectory(prefix="ml-validate-") as tmp:

        def downloads() -> str:
            state["local"] = download_artifacts(artifact_uri=model_uri, dst_path=tmp)
            return model_uri

        for name, action in [
            ("downloads", downloads),
            ("has_signature", has_signature),
            ("has_input_example", has_example),
            ("loads", loads),
            ("predicts", predicts),
            ("output_matches_signature", matches),
        ]:
            if not step(name, action):
                break
    return ValidationReport(tuple(steps))


class RayModelValidator:
    """`ModelValidator` that runs `validate_model` as a Ray task.

    Args:
        tracking_uri: the MLflow store the model lives in.
        num_cpus: CPUs the task reserves.
        timeout_s: a validation running longer fails its `completes` step.
    """

    def __init__(self, tracking_uri: str, num_cpus: float, timeout_s: float) -> None:
        self._tracking_uri = tracking_uri
        self._num_cpus = num_cpus
        self._timeout_s = timeout_s
        self._task = ray.remote(num_cpus=num_cpus, max_retries=0)(validate_model)

    async def validate(self, model_uri: str) -> ValidationReport:
        """See `ModelValidator.validate`.

        Raises:
            Unavailable: the task was still waiting for its CPUs when the time ran out.
        """
        ref = self._task.remote(self._tracking_uri, model_uri)
        try:
            report: ValidationReport = await asyncio.wait_for(ref, self._timeout_s)
            return report
        except TimeoutError:
            started = await asyncio.to_thread(_started, ref)
            ray.cancel(ref, force=True)
            if not started:
                log.warning(
                    "validation of %s got no CPU (%g wanted) in %g s; cancelled",
                    model_uri,
                    self._num_cpus,
                    self._timeout_s,
                )
                raise Unavailable(
                    ErrorCode.BACKEND_UNAVAILABLE,
                    f"The validation task got no free CPU ({self._num_cpus:g} wanted, "
                    f"registry.validation_num_cpus) within {self._timeout_s:g} s; nothing "
                    "was changed or recorded against the version. Retry when the cluster "
                    "has room.",
                    wanted_cpus=self._num_cpus,
                    waited_s=self._timeout_s,
                ) from None
            return ValidationReport(
                (("completes", False, f"did not complete within {self._timeout_s:g} s"),)
            )
        except ray.exceptions.RayError as exc:
            log.exception("validation task for %s failed", model_uri)
            return ValidationReport((("completes", False, type(exc).__name__),))


_WAITING = frozenset(
    {
        "NIL",
        "PENDING_ARGS_AVAIL",
        "PENDING_ARGS_FETCH",
        "PENDING_NODE_ASSIGNMENT",
        "PENDING_OBJ_STORE_MEM_AVAIL",
    }
)


def _started(ref: Any) -> bool:
    """Whether the task behind `ref` got a worker (Ray's state API; when that cannot
    tell, it is taken as started, so the timeout counts as the version's)."""
    from ray.util.state import get_task

    try:
        attempts = get_task(ref, timeout=10)
    except Exception:  # the state API is out: no verdict either way
        log.warning("could not read the validation task's state", exc_info=True)
        return True
    if not attempts:
        return True
    found = attempts if isinstance(attempts, list) else [attempts]
    return any(str(getattr(a, "state", "")) not in _WAITING for a in found)
