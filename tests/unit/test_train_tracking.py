"""`EpochLogger`: what Ray Train's controller hands it reaches the MLflow run (a real SQLite
store). The whole path, a fit whose controller logs the loop's epochs, runs in
tests/integration/test_training.py."""

import pickle
from pathlib import Path

from mlflow import MlflowClient

from app.adapters.train_tracking import RESUMED_TAG, EpochLogger


def test_rank_zeros_report_is_logged_at_its_epoch_and_a_resume_is_tagged(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    logger = EpochLogger(uri, run_id)

    reports = [  # as the controller consolidates them: one dict per rank, rank 0 first
        [{"train_loss": 0.5, "epoch": 3, "resumed_at_epoch": 2}, {"train_loss": 0.9, "epoch": 3}],
        [{"train_loss": 0.4, "epoch": 4}, {"train_loss": 0.8, "epoch": 4}],
    ]
    for metrics in reports:
        logger.after_report(None, metrics, None)

    history = client.get_metric_history(run_id, "train_loss")
    assert sorted((m.step, m.value) for m in history) == [(2, 0.5), (3, 0.4)]
    assert [m.value for m in client.get_metric_history(run_id, "epoch")] == [3.0, 4.0]
    run = client.get_run(run_id)
    assert run.data.tags[RESUMED_TAG] == "2"
    assert "resumed_at_epoch" not in run.data.metrics  # a tag, not a metric


def test_the_logger_travels_to_the_controller_without_its_client(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    logger = EpochLogger(uri, run_id)
    logger.after_report(None, [{"train_loss": 0.5, "epoch": 1}], None)
    assert logger._client is not None

    copy = pickle.loads(pickle.dumps(logger))

    assert (copy.tracking_uri, copy.run_id, copy._client) == (uri, run_id, None)
    copy.after_report(None, [{"train_loss": 0.3, "epoch": 2}], None)
    assert len(client.get_metric_history(run_id, "train_loss")) == 2
