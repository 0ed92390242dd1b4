"""Experiments and runs in a tracking store (MLflow)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from app.core.tracking import (
    Experiment,
    MetricPoint,
    NewExperiment,
    Page,
    Run,
    RunQuery,
    RunRecord,
    RunUpdate,
)


class ExperimentTracker(Protocol):
    """Experiments and runs in a tracking store."""

    def create_experiment(
        self, new: NewExperiment, idempotency_key: str | None = None, request_digest: str = ""
    ) -> tuple[Experiment, bool]:
        """Create an experiment.

        Args:
            new: name, tags and description.
            idempotency_key: a retry with the same key and request returns the first result.
            request_digest: digest of the request, to tell a retry from a different request.

        Returns:
            The experiment, and True if this call created it (False for a replayed retry).

        Raises:
            Conflict: the name is taken (`experiment_already_exists`), or the key was used
                for a different request (`idempotency_key_reused`).
            Unavailable: the store cannot be reached.
        """
        ...

    def get_experiment(self, experiment_id: str) -> Experiment:
        """One experiment by id.

        Raises:
            NotFound: no such experiment (`experiment_not_found`).
        """
        ...

    def list_experiments(
        self, name_contains: str | None, page_size: int, page_token: str | None
    ) -> Page[Experiment]:
        """Active experiments, optionally filtered by a case-insensitive name substring.

        Raises:
            InvalidInput: the backend rejected `page_token` (`invalid_page_token`).
        """
        ...

    def log_run(
        self,
        experiment_id: str,
        record: RunRecord,
        idempotency_key: str | None = None,
        request_digest: str | None = None,
    ) -> tuple[Run, bool]:
        """Log a whole run (params, metrics with steps and timestamps, tags, datasets).

        All or nothing: if any part fails, the run is removed again. `idempotency_key` and
        `request_digest` work as in `create_experiment`.

        Returns:
            The run as stored, and True if this call created it (False for a replay).

        Raises:
            NotFound: the experiment does not exist or is deleted.
            Conflict: the idempotency key was used for a different request.
            InvalidInput: the store refused a value.
        """
        ...

    def update_run(self, experiment_id: str, run_id: str, update: RunUpdate) -> Run:
        """Append data to an ongoing run and optionally end it.

        Raises:
            NotFound: no such run in this experiment (`run_not_found`).
            Conflict: the run has already ended (`run_already_terminated`).
        """
        ...

    def get_run(self, experiment_id: str, run_id: str) -> Run:
        """One run of an experiment.

        Raises:
            NotFound: no such experiment, or no such run in it.
        """
        ...

    def search_runs(
        self, experiment_id: str, query: RunQuery, page_size: int, page_token: str | None
    ) -> Page[Run]:
        """Runs of an experiment matching an MLflow filter, in the requested order.

        Raises:
            NotFound: no such experiment.
            InvalidInput: the filter (`invalid_filter`), ordering or page token is invalid.
        """
        ...

    def metric_history(self, experiment_id: str, run_id: str, key: str) -> Sequence[MetricPoint]:
        """Every logged value of one metric of a run, by step then time.

        Raises:
            NotFound: no such run in this experiment.
        """
        ...
