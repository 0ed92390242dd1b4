"""`ExperimentTracker` over MLflow's tracking store (SQLite by default, PostgreSQL by URI)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException

from app.adapters.idempotency_claims import SqlIdempotencyClaims
from app.adapters.keyed_locks import KeyedLocks
from app.adapters.mlflow_errors import (
    check_query,
    experiment_not_found,
    first_line,
    mlflow_call,
    run_not_found,
    unavailable,
)
from app.adapters.mlflow_mapping import experiment_of, run_of, token_text
from app.core.batching import pack
from app.core.tracking import (
    CREATED_BY_TAG,
    DATASET_CONTEXT_TAG,
    DESCRIPTION_TAG,
    IDEMPOTENCY_KEY_TAG,
    REQUEST_DIGEST_TAG,
    USER_TAG,
    DatasetRef,
    Experiment,
    MetricPoint,
    NewExperiment,
    Page,
    Run,
    RunQuery,
    RunRecord,
    RunStatus,
    RunUpdate,
    check_run_transition,
)
from app.errors import (
    Conflict,
    ErrorCode,
    InvalidInput,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class MlflowExperimentTracker:
    """Experiments and runs in MLflow, with idempotent, all-or-nothing writes.

    Args:
        tracking_uri: MLflow backend store URI (a database, or an MLflow server).
        artifact_root: where new experiments keep their artifacts (path or s3://...).
    """

    def __init__(
        self, tracking_uri: str, artifact_root: str, claims: SqlIdempotencyClaims | None = None
    ) -> None:
        self._tracking_uri = tracking_uri
        self._artifact_root = artifact_root.rstrip("/")
        self._claims = claims
        self._locks = KeyedLocks()
        # SQLite takes one writer at a time: this tracker's writers (an ingress replica's)
        # queue here instead of all running at once and contending for the file's lock and
        # for the GIL (11% less CPU per run logged by 8 clients at once: log_run.py in
        # benchmarks/README.md).
        self._write_lane: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if tracking_uri.startswith("sqlite:") else contextlib.nullcontext()
        )
        self._connect_lock = threading.Lock()
        self._connected: MlflowClient | None = None

    @property
    def _client(self) -> MlflowClient:
        """MLflow's client, connected on first use: a store that is down at start-up makes
        requests answer 503 (and /health say so) instead of failing the replica."""
        if self._connected is None:
            with self._connect_lock:
                if self._connected is None:
                    try:
                        self._connected = MlflowClient(self._tracking_uri, self._tracking_uri)
                    except Exception:
                        log.exception("cannot open the MLflow tracking store")
                        raise unavailable() from None
        return self._connected

    # -- experiments ------------------------------------------------------------------

    def create_experiment(
        self, new: NewExperiment, idempotency_key: str | None = None, request_digest: str = ""
    ) -> tuple[Experiment, bool]:
        """See `ExperimentTracker.create_experiment`."""
        with self._locks.hold(idempotency_key):
            if idempotency_key:
                replay = self._experiment_by_key(idempotency_key)
                if replay is not None:
                    _check_same_request(replay.tags, idempotency_key, request_digest)
                    return replay, False
            tags = {
                **new.tags,
                CREATED_BY_TAG: new.created_by,
                **({DESCRIPTION_TAG: new.description} if new.description else {}),
                **_idempotency_tags(idempotency_key, request_digest),
            }
            location = f"{self._artifact_root}/{uuid.uuid4().hex}"
            try:
                with self._write_lane:
                    experiment_id = mlflow_call(
                        lambda: self._client.create_experiment(new.name, location, tags)
                    )
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_ALREADY_EXISTS" and idempotency_key:
                    # a retry racing on another replica created it first: replay that
                    replay = self._experiment_by_key(idempotency_key)
                    if replay is not None:
                        _check_same_request(replay.tags, idempotency_key, request_digest)
                        return replay, False
                if exc.error_code == "RESOURCE_ALREADY_EXISTS":
                    raise Conflict(
                        ErrorCode.EXPERIMENT_ALREADY_EXISTS,
                        f"An experiment named {new.name!r} already exists (possibly deleted).",
                        name=new.name,
                    ) from None
                raise
            log.info("created experiment %s (%r) for %s", experiment_id, new.name, new.created_by)
            return self.get_experiment(experiment_id), True

    def get_experiment(self, experiment_id: str) -> Experiment:
        """See `ExperimentTracker.get_experiment`."""
        try:
            experiment = mlflow_call(lambda: self._client.get_experiment(experiment_id))
        except MlflowException as exc:
            if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
                raise experiment_not_found(experiment_id) from None
            raise
        if experiment.lifecycle_stage != "active":
            raise experiment_not_found(experiment_id)
        return experiment_of(experiment)

    def list_experiments(
        self, name_contains: str | None, page_size: int, page_token: str | None
    ) -> Page[Experiment]:
        """See `ExperimentTracker.list_experiments`."""
        result = mlflow_call(
            lambda: self._client.search_experiments(
                view_type=ViewType.ACTIVE_ONLY,
                max_results=page_size,
                filter_string=_name_filter(name_contains),
                order_by=["creation_time DESC", "experiment_id DESC"],
                page_token=page_token,
            ),
            search=True,
        )
        # MLflow's LIKE treats % and _ as wildcards; keep only true substring matches.
        needle = (name_contains or "").lower()
        items = tuple(experiment_of(e) for e in result if needle in e.name.lower())
        return Page(items=items, next_token=token_text(result.token))

    def _experiment_by_key(self, key: str) -> Experiment | None:
        found = mlflow_call(
            lambda: self._client.search_experiments(
                view_type=ViewType.ALL,
                max_results=1,
                filter_string=f"tags.`{IDEMPOTENCY_KEY_TAG}` = '{key}'",
            )
        )
        return experiment_of(found[0]) if found else None

    # -- runs -------------------------------------------------------------------------

    def log_run(
        self,
        experiment_id: str,
        record: RunRecord,
        idempotency_key: str | None = None,
        request_digest: str | None = None,
    ) -> tuple[Run, bool]:
        """See `ExperimentTracker.log_run`."""
        with self._locks.hold(idempotency_key and f"{experiment_id}/{idempotency_key}"):
            if idempotency_key:
                self.get_experiment(experiment_id)
                replay = self._first_run_by_key(experiment_id, idempotency_key)
                if replay is not None:
                    _check_same_request(replay.tags, idempotency_key, request_digest or "")
                    return replay, False
            scope = f"run:{experiment_id}"
            if idempotency_key and self._claims is not None:
                # retries racing on other replicas: the first claim does the work
                other = self._claims.claim(scope, idempotency_key, request_digest or "")
                if other is not None:
                    _check_same_request(
                        {REQUEST_DIGEST_TAG: other.digest}, idempotency_key, request_digest or ""
                    )
                    run_id = self._claims.result(scope, idempotency_key)
                    return self._read_run(experiment_id, run_id), False
            try:
                with self._write_lane:
                    run = self._write_run(experiment_id, record, idempotency_key, request_digest)
            except BaseException:
                if idempotency_key and self._claims is not None:
                    self._claims.release(scope, idempotency_key)
                raise
            if idempotency_key and self._claims is not None:
                self._claims.complete(scope, idempotency_key, run.id)
            return run, True

    def _write_run(
        self,
        experiment_id: str,
        record: RunRecord,
        idempotency_key: str | None,
        request_digest: str | None,
    ) -> Run:
        """Create the run and write it whole (a half-written run is removed)."""
        created = self._create_run(experiment_id, record, idempotency_key, request_digest)
        run_id = str(created.info.run_id)
        end_ms = None
        try:
            self._write(run_id, record.params, record.metrics, {})
            self._log_datasets(run_id, record.datasets)
            if record.status is not RunStatus.RUNNING:
                end_ms = record.end_ms or _now_ms()
                mlflow_call(lambda: self._client.set_terminated(run_id, record.status, end_ms))
        except BaseException:
            self._discard(run_id)
            raise
        log.info("logged run %s in experiment %s for %s", run_id, experiment_id, record.created_by)
        if record.datasets:  # as MLflow keeps them (deduplicated)
            return self._read_run(experiment_id, run_id)
        return _written_run(created, record, end_ms)

    def _create_run(
        self,
        experiment_id: str,
        record: RunRecord,
        idempotency_key: str | None,
        request_digest: str | None,
    ) -> Any:
        """The new run (MLflow's `Run`, as created: no params or metrics yet)."""
        tags = {
            **record.tags,
            USER_TAG: record.created_by,
            CREATED_BY_TAG: record.created_by,
            **_idempotency_tags(idempotency_key, request_digest or ""),
        }
        try:
            run = mlflow_call(
                lambda: self._client.create_run(
                    experiment_id, start_time=record.start_ms, tags=tags, run_name=record.name
                )
            )
        except MlflowException as exc:
            # MLflow checks the experiment exists and is active as part of the write.
            if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
                raise experiment_not_found(experiment_id) from None
            raise
        return run

    def update_run(self, experiment_id: str, run_id: str, update: RunUpdate) -> Run:
        """See `ExperimentTracker.update_run`."""
        with self._locks.hold(f"run/{run_id}"):
            current = self.get_run(experiment_id, run_id)
            check_run_transition(run_id, current.status, update.status)
            with self._write_lane:
                self._write(run_id, update.params, update.metrics, update.tags)
                if update.status is not None and update.status.terminal:
                    end_ms = update.end_ms or _now_ms()
                    mlflow_call(lambda: self._client.set_terminated(run_id, update.status, end_ms))
            return self._read_run(experiment_id, run_id)

    def get_run(self, experiment_id: str, run_id: str) -> Run:
        """See `ExperimentTracker.get_run`."""
        self.get_experiment(experiment_id)
        return self._read_run(experiment_id, run_id)

    def _read_run(self, experiment_id: str, run_id: str) -> Run:
        """A run of an experiment already known to exist."""
        try:
            run = mlflow_call(lambda: self._client.get_run(run_id))
        except MlflowException as exc:
            if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
                raise run_not_found(experiment_id, run_id) from None
            raise
        if run.info.experiment_id != experiment_id or run.info.lifecycle_stage != "active":
            raise run_not_found(experiment_id, run_id)
        return run_of(run)

    def search_runs(
        self, experiment_id: str, query: RunQuery, page_size: int, page_token: str | None
    ) -> Page[Run]:
        """See `ExperimentTracker.search_runs`."""
        self.get_experiment(experiment_id)
        check_query(query)
        result = mlflow_call(
            lambda: self._client.search_runs(
                [experiment_id],
                filter_string=query.filter,
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=page_size,
                order_by=list(query.order_by) or None,
                page_token=page_token,
            ),
            search=True,
        )
        return Page(items=tuple(run_of(run) for run in result), next_token=token_text(result.token))

    def metric_history(self, experiment_id: str, run_id: str, key: str) -> Sequence[MetricPoint]:
        """See `ExperimentTracker.metric_history`."""
        self.get_run(experiment_id, run_id)
        history = mlflow_call(lambda: self._client.get_metric_history(run_id, key))
        points = [MetricPoint(m.key, m.value, m.step, m.timestamp) for m in history]
        return sorted(points, key=lambda p: (p.step, p.timestamp_ms))

    def ping(self) -> None:
        """Touch the store cheaply; raises whatever the store raises."""
        self._client.search_experiments(max_results=1)

    def _first_run_by_key(self, experiment_id: str, key: str) -> Run | None:
        """Of the runs created with `key` (two replicas may race), the one that stays: the
        smallest run id, so that every racer agrees."""
        found = mlflow_call(
            lambda: self._client.search_runs(
                [experiment_id],
                filter_string=f"tags.`{IDEMPOTENCY_KEY_TAG}` = '{key}'",
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=50,
            )
        )
        return run_of(min(found, key=lambda r: r.info.run_id)) if found else None

    def _write(
        self,
        run_id: str,
        params: Mapping[str, str],
        metrics: Sequence[MetricPoint],
        tags: Mapping[str, str],
    ) -> None:
        batches = pack(
            [Param(k, v) for k, v in params.items()],
            [RunTag(k, v) for k, v in tags.items()],
            [Metric(m.key, m.value, m.timestamp_ms, m.step) for m in metrics],
        )
        for batch in batches:
            self._log_batch(
                run_id,
                params=list(batch.params),
                tags=list(batch.tags),
                metrics=list(batch.metrics),
            )

    def _log_batch(self, run_id: str, **entities: Any) -> None:
        try:
            mlflow_call(lambda: self._client.log_batch(run_id, synchronous=True, **entities))
        except MlflowException as exc:
            if exc.error_code == "INVALID_PARAMETER_VALUE":
                # e.g. a param logged again with a different value: MLflow params are immutable.
                raise InvalidInput(
                    ErrorCode.VALIDATION_FAILED, first_line(exc.message), run_id=run_id
                ) from None
            raise

    def _log_datasets(self, run_id: str, datasets: Sequence[DatasetRef]) -> None:
        if not datasets:
            return
        inputs = [
            DatasetInput(
                Dataset(d.name, d.digest, d.source_type, d.source, d.schema, d.profile),
                [InputTag(DATASET_CONTEXT_TAG, d.context)] if d.context else [],
            )
            for d in datasets
        ]
        mlflow_call(lambda: self._client.log_inputs(run_id, datasets=inputs))

    def _discard(self, run_id: str) -> None:
        """Remove a half-written run: hard-delete where the store can, else soft-delete."""
        store = getattr(getattr(self._client, "_tracking_client", None), "store", None)
        try:
            hard_delete = getattr(store, "_hard_delete_run", None)
            if callable(hard_delete):
                hard_delete(run_id)
            else:
                self._client.delete_run(run_id)
            log.warning("discarded half-written run %s", run_id)
        except Exception:
            log.exception("could not discard half-written run %s", run_id)


def _check_same_request(tags: Mapping[str, str], key: str, request_digest: str) -> None:
    if tags.get(REQUEST_DIGEST_TAG, "") != request_digest:
        raise Conflict(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "This Idempotency-Key was already used for a different request.",
            idempotency_key=key,
        )


def _idempotency_tags(key: str | None, request_digest: str) -> dict[str, str]:
    return {IDEMPOTENCY_KEY_TAG: key, REQUEST_DIGEST_TAG: request_digest} if key else {}


def _name_filter(name_contains: str | None) -> str | None:
    if not name_contains:
        return None
    quote = '"' if "'" in name_contains else "'"
    if quote in name_contains and '"' in name_contains:
        raise InvalidInput.for_field(
            "name", "cannot contain both single and double quotes", location="query"
        )
    return f"name ILIKE {quote}%{name_contains}%{quote}"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _written_run(created: Any, record: RunRecord, end_ms: int | None) -> Run:
    """The run `_write_run` stored, without reading it back (a round trip carrying every
    metric): MLflow's run as created, with the record's params, its status, and each
    metric's latest value as MLflow picks it (the greatest step, then timestamp, then
    value). A test compares it with the run read back."""
    latest: dict[str, MetricPoint] = {}
    for point in record.metrics:
        held = latest.get(point.key)
        if held is None or (point.step, point.timestamp_ms, point.value) > (
            held.step,
            held.timestamp_ms,
            held.value,
        ):
            latest[point.key] = point
    run = run_of(created)
    return dataclasses.replace(
        run,
        status=record.status,
        end_ms=end_ms,
        params=dict(record.params),
        metrics=latest,
    )
