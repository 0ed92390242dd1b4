"""Real MLflow runs that log tiny real PyTorch models, for the registry tests."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
import torch

PIP = ["torch==2.13.0"]  # explicit: inferring requirements costs seconds per model


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    experiment_id: str


def log_model_run(
    tracking_uri: str,
    artifact_root: str,
    experiment: str,
    *,
    inputs: int = 4,
    seed: int = 0,
    accuracy: float = 0.9,
    with_example: bool = True,
    dataset_digest: str | None = None,
) -> LoggedRun:
    """A run with params, an accuracy metric, a training dataset input and a logged model."""
    mlflow.set_tracking_uri(tracking_uri)
    experiment_id = _experiment(experiment, artifact_root)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(inputs, 2))
    example = np.random.default_rng(seed).random((3, inputs)).astype("float32")
    frame = pd.DataFrame(example, columns=[f"f{i}" for i in range(inputs)])
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params({"inputs": inputs, "seed": seed})
        mlflow.log_metric("accuracy", accuracy)
        dataset = mlflow.data.from_pandas(
            frame, source="data/churn/train.parquet", name="churn-train", digest=dataset_digest
        )
        mlflow.log_input(dataset, context="training")
        mlflow.set_tag("mlflow.source.git.commit", f"commit-{seed}")
        if with_example:
            mlflow.pytorch.log_model(net, name="model", input_example=example, pip_requirements=PIP)
        else:
            signature = mlflow.models.infer_signature(
                example, net(torch.tensor(example)).detach().numpy()
            )
            mlflow.pytorch.log_model(
                net,
                name="model",
                signature=signature,
                pip_requirements=PIP,
                serialization_format="pickle",
            )
    return LoggedRun(run.info.run_id, experiment_id)


def _experiment(name: str, artifact_root: str) -> str:
    """The experiment `name`; a new one keeps its artifacts under `artifact_root`, except
    through the service's MLflow server, which chooses (clients see it as proxied)."""
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    if mlflow.get_tracking_uri().startswith(("http://", "https://")):
        return str(mlflow.create_experiment(name))
    return str(mlflow.create_experiment(name, artifact_location=f"{artifact_root}/{name}"))


class FlakyModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """Fails on every row whose first feature is above `threshold`; else predicts 0/1."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def predict(
        self, context: object, model_input: pd.DataFrame, params: object = None
    ) -> list[int]:
        first = model_input.iloc[:, 0]
        if (first > self.threshold).any():
            raise ValueError("feature out of the range this model handles")
        return [int(x > self.threshold / 2) for x in first]


def log_flaky_run(
    tracking_uri: str, artifact_root: str, experiment: str, threshold: float = 0.5
) -> LoggedRun:
    """A run logging a pyfunc model that raises on part of its inputs (a bad canary)."""
    return _log_python_model(tracking_uri, artifact_root, experiment, FlakyModel(threshold))


class HangingModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """Never finishes loading, except in the process that logged it (where MLflow loads it
    once to check its input example)."""

    def __init__(self) -> None:
        self.logged_by = os.getpid()

    def load_context(self, context: object) -> None:
        while os.getpid() != self.logged_by:
            time.sleep(3600)

    def predict(
        self, context: object, model_input: pd.DataFrame, params: object = None
    ) -> list[int]:
        return [0] * len(model_input)


def log_hanging_run(tracking_uri: str, artifact_root: str, experiment: str) -> LoggedRun:
    """A run logging a pyfunc model whose load never returns anywhere else."""
    return _log_python_model(tracking_uri, artifact_root, experiment, HangingModel())


def _log_python_model(
    tracking_uri: str, artifact_root: str, experiment: str, model: mlflow.pyfunc.PythonModel
) -> LoggedRun:
    """A run logging `model` (four double columns f0..f3 in) with an accuracy."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # loadable anywhere
    mlflow.set_tracking_uri(tracking_uri)
    experiment_id = _experiment(experiment, artifact_root)
    example = pd.DataFrame({f"f{i}": [0.1, 0.2] for i in range(4)})
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_metric("accuracy", 0.9)
        mlflow.pyfunc.log_model(
            name="model", python_model=model, input_example=example, pip_requirements=PIP
        )
    return LoggedRun(run.info.run_id, experiment_id)


FEATURES = ("tenure_months", "monthly_charges", "support_calls")


class ScoredModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """A classifier whose behaviour is a parameter: class scores as a mapping per row
    (`{"0": 0.7, "1": 0.3}` through the API, like the sample churn MLP), a share of rows it
    fails on (`error_rate`, decided by the row's values: the same row fails every time;
    only rows with `tenure_months >= 2`, so its input example always passes validation),
    and extra latency per call (`delay_ms`)."""

    def __init__(self, weights: tuple[float, ...], error_rate: float, delay_ms: float) -> None:
        self.weights = weights
        self.error_rate = error_rate
        self.delay_ms = delay_ms

    def predict(
        self, context: object, model_input: pd.DataFrame, params: object = None
    ) -> pd.DataFrame:
        import hashlib
        import time

        if self.delay_ms:
            time.sleep(self.delay_ms / 1000)
        values = model_input[list(FEATURES)].to_numpy(dtype="float64")
        for row in values:
            digest = hashlib.blake2b(row.tobytes(), digest_size=4).digest()
            if row[0] >= 2 and int.from_bytes(digest, "big") / 2**32 < self.error_rate:
                raise ValueError("this model fails on rows like this one")
        score = values @ np.asarray(self.weights[: len(FEATURES)]) + self.weights[-1]
        positive = 1 / (1 + np.exp(-score))
        return pd.DataFrame({"0": 1 - positive, "1": positive})


def log_scored_run(
    tracking_uri: str,
    artifact_root: str,
    experiment: str,
    *,
    weights: tuple[float, ...] = (0.8, -0.5, 0.3, 0.0),
    error_rate: float = 0.0,
    delay_ms: float = 0.0,
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
) -> LoggedRun:
    """A run logging a `ScoredModel` (named double columns in, class scores out), with an
    input example and the given metrics and tags."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # loadable anywhere
    mlflow.set_tracking_uri(tracking_uri)
    experiment_id = _experiment(experiment, artifact_root)
    example = pd.DataFrame({name: [0.5, 1.5] for name in FEATURES})
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_metrics(metrics or {"val_accuracy": 0.8})
        mlflow.set_tags(tags or {})
        mlflow.pyfunc.log_model(
            name="model",
            python_model=ScoredModel(weights, error_rate, delay_ms),
            input_example=example,
            pip_requirements=PIP,
        )
    return LoggedRun(run.info.run_id, experiment_id)
