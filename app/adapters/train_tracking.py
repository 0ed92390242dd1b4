"""The built-in trainers' epoch metrics, logged to the MLflow run by Ray Train's controller.

The training loop reports each epoch to Ray Train (`ray.train.report`); Ray Train's
controller, one process per fit, hands every consolidated report to `EpochLogger`, which
writes rank 0's metrics to the job's MLflow run. The training workers never import MLflow:
importing it and opening its SQL store took each worker about 1.2 s of its start before
its first batch (0.55 s the import, 0.63 s the store's models; benchmarks/training.py).
The controller pays it once, at the first report, while the workers train on.

This module imports neither torch nor MLflow at its top: the controller unpickles the
logger when it starts, before any worker exists.
"""

from __future__ import annotations

import time
from typing import Any

from ray.train import UserCallback

EPOCH = "epoch"  # reported key: the epochs done (1-based); the metrics' MLflow step is one less
RESUMED_AT = "resumed_at_epoch"  # reported once, by a loop that resumed from a checkpoint
RESUMED_TAG = "mlservice.resumed_at_epoch"


class EpochLogger(UserCallback):
    """Logs rank 0's report of each epoch to the MLflow run `run_id` (step: the epoch,
    from 0). A report that says the loop resumed also sets the run's `RESUMED_TAG` (a log
    line is easy to miss). A failed write fails the fit, as it did in the worker."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        self.tracking_uri, self.run_id = tracking_uri, run_id
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"tracking_uri": self.tracking_uri, "run_id": self.run_id, "_client": None}

    def after_report(
        self,
        run_context: Any,  # noqa: ARG002 (Ray Train's signature)
        metrics: list[dict[str, Any]],
        checkpoint: Any,  # noqa: ARG002 (persisted by the worker before it reported)
    ) -> None:
        from mlflow.entities import Metric

        reported = dict(metrics[0])  # rank 0's: the lowest rank that reported
        resumed = reported.pop(RESUMED_AT, None)
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(self.tracking_uri)
        if resumed is not None:
            self._client.set_tag(self.run_id, RESUMED_TAG, str(int(resumed)))
        step = int(reported[EPOCH]) - 1
        now = int(time.time() * 1000)
        self._client.log_batch(
            self.run_id,
            metrics=[Metric(key, float(value), now, step) for key, value in reported.items()],
            synchronous=True,
        )
