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
        self._timeout_s = timeout_s
        self._task = ray.remote(num_cpus=num_cpus, max_retries=0)(validate_model)

    async def validate(self, model_uri: str) -> ValidationReport:
        """See `ModelValidator.validate`."""
        ref = self._task.remote(self._tracking_uri, model_uri)
        try:
            report: ValidationReport = await asyncio.wait_for(ref, self._timeout_s)
            return report
        except TimeoutError:
            ray.cancel(ref, force=True)
            return ValidationReport((("completes", False, f"timed out after {self._timeout_s}s"),))
        except ray.exceptions.RayError as exc:
            log.exception("validation task for %s failed", model_uri)
            return ValidationReport((("completes", False, type(exc).__name__),))
