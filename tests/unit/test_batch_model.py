"""The batch job's model replica: its Arrow output, value by value, against the model's own
predictions (a real MLflow model on a local store)."""

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from app.adapters import torch_mlp
from app.jobs.batch_predict import BatchModel

FEATURES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A logged classifier: (tracking URI, model URI)."""
    root = Path(tmp_path_factory.mktemp("mlflow"))
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking)
    torch.manual_seed(0)
    network = torch_mlp.build(torch_mlp.CLASSIFIER, len(FEATURES), {"hidden": [8]})
    model = torch_mlp.Servable(network, [0.5, 1.0, -1.0], [2.0, 1.0, 0.5], True).eval()
    example = pd.DataFrame([[0.0] * len(FEATURES)], columns=FEATURES, dtype="float64")
    experiment = mlflow.create_experiment("batch", artifact_location=str(root / "artifacts"))
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.pytorch.log_model(
            model, name="model", input_example=example, serialization_format="pickle"
        )
    return tracking, f"runs:/{run.info.run_id}/model"


def test_predictions_are_the_models_own_with_ids_and_labels(classifier: tuple[str, str]) -> None:
    tracking, uri = classifier
    rng = np.random.default_rng(1)
    batch = pd.DataFrame(rng.normal(size=(500, 3)), columns=FEATURES)
    batch.insert(0, "id", np.arange(1000, 1500))
    replica = BatchModel(tracking, uri, None, "id", {"model_version": 3, "input_digest": "d1"})

    out = replica(batch).to_pandas()

    expected = np.asarray(mlflow.pyfunc.load_model(uri).predict(batch[FEATURES]))
    assert list(out.columns) == ["id", "prediction", "model_version", "input_digest"]
    assert out["id"].tolist() == list(range(1000, 1500))
    got = np.array([[p["0"], p["1"]] for p in out["prediction"]])  # class probabilities
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert set(out["model_version"]) == {3} and set(out["input_digest"]) == {"d1"}
