"""MLflow's errors as the domain's: store outages are 503, refused queries name the query
field, missing experiments and runs are 404."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from mlflow.exceptions import MlflowException
from mlflow.utils.search_utils import SearchUtils

from app.core.tracking import RunQuery
from app.errors import (
    DomainError,
    ErrorCode,
    InvalidInput,
    NotFound,
    Unavailable,
    chain,
    is_disk_full,
    storage_full,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")
# How boto3 (MLflow's S3 artifact repository) says the object store cannot be reached.
_OBJECT_STORE_OUTAGES = frozenset(
    {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"}
)
_ENDPOINT_DOWN = "Could not connect to the endpoint URL"  # boto3's, when MLflow rewraps it
_OUTAGE_CODES = frozenset({"TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR"})


def store_outages(method: Callable[P, T]) -> Callable[P, T]:
    """A method whose store outages are the domain's 503s: MLflow's database out is
    `tracking_store_unavailable`, its artifact store (S3) out `object_store_unavailable`;
    every other error (a missing model, a refused value) stays what it is."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except DomainError:
            raise
        except Exception as exc:
            if is_disk_full(exc):
                raise _disk_full(exc) from None
            if is_object_store_outage(exc):
                log.warning("object store unavailable: %s", type(exc).__name__)
                raise object_store_unavailable() from None
            if (
                isinstance(exc, MlflowException)
                and exc.error_code in _OUTAGE_CODES
                and _is_outage(exc)
            ):
                log.warning("MLflow store unavailable: %s", type(exc).__name__)
                raise unavailable() from None
            raise

    return call


def is_object_store_outage(exc: BaseException) -> bool:
    """Whether `exc` says MLflow's artifact store (S3, through boto3) cannot be reached."""
    return _caused_by(exc, _OBJECT_STORE_OUTAGES) or _ENDPOINT_DOWN in str(exc)


def _caused_by(exc: BaseException, names: frozenset[str]) -> bool:
    """Whether `exc`, or an exception it was raised from or during, is of a class named
    in `names` (or a subclass of one)."""
    return any(k.__name__ in names for e in chain(exc) for k in type(e).__mro__)


def mlflow_call(fn: Callable[[], T], *, search: bool = False) -> T:
    """Run one MLflow call, turning store outages (and, for searches, refused queries)
    into domain errors."""
    try:
        return fn()
    except DomainError:
        raise
    except MlflowException as exc:
        if is_disk_full(exc):
            raise _disk_full(exc) from None
        if search and exc.error_code == "INVALID_PARAMETER_VALUE":
            raise _refused_search(exc) from None
        if exc.error_code in {"TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR"} and _is_outage(exc):
            log.exception("MLflow store unavailable")
            raise unavailable() from None
        raise
    except (ConnectionError, TimeoutError, OSError) as exc:
        if is_disk_full(exc):
            raise _disk_full(exc) from None
        log.exception("MLflow store unavailable: %s", type(exc).__name__)
        raise unavailable() from None


def _disk_full(exc: BaseException) -> Unavailable:
    log.error("an MLflow write found its disk full: %s", first_line(str(exc)))
    return storage_full()


def check_query(query: RunQuery) -> None:
    try:
        SearchUtils.parse_search_filter(query.filter)
    except MlflowException as exc:
        raise InvalidInput.for_field(
            "filter", first_line(exc.message), location="query", code=ErrorCode.INVALID_FILTER
        ) from None
    for clause in query.order_by:
        try:
            SearchUtils.parse_order_by_for_search_runs(clause)
        except MlflowException as exc:
            raise InvalidInput.for_field(
                "order_by", first_line(exc.message), location="query"
            ) from None


def _refused_search(exc: MlflowException) -> InvalidInput:
    """Name the query field MLflow refused: the page token, else the filter."""
    message = first_line(exc.message)
    if "page token" in message.lower():
        return InvalidInput.for_field(
            "page_token",
            "is not valid for this listing",
            location="query",
            code=ErrorCode.INVALID_PAGE_TOKEN,
        )
    return InvalidInput.for_field(
        "filter", message, location="query", code=ErrorCode.INVALID_FILTER
    )


def _is_outage(exc: MlflowException) -> bool:
    text = str(exc).lower()
    return any(s in text for s in ("operationalerror", "locked", "could not connect", "timeout"))


def first_line(text: str) -> str:
    return text.strip().splitlines()[0][:500] if text.strip() else "invalid value"


def experiment_not_found(experiment_id: str) -> NotFound:
    return NotFound(
        ErrorCode.EXPERIMENT_NOT_FOUND,
        f"No experiment with id {experiment_id!r}.",
        experiment_id=experiment_id,
    )


def run_not_found(experiment_id: str, run_id: str) -> NotFound:
    return NotFound(
        ErrorCode.RUN_NOT_FOUND,
        f"No run {run_id!r} in experiment {experiment_id!r}.",
        experiment_id=experiment_id,
        run_id=run_id,
    )


def object_store_unavailable() -> Unavailable:
    return Unavailable(
        ErrorCode.OBJECT_STORE_UNAVAILABLE, "The object store (S3) is unavailable; retry shortly."
    )


def unavailable() -> Unavailable:
    return Unavailable(
        ErrorCode.TRACKING_STORE_UNAVAILABLE, "The tracking store is unavailable; retry shortly."
    )
