"""Store outages behind MLflow's client are 503s naming the store; nothing else is."""

from __future__ import annotations

import pytest
from botocore.exceptions import EndpointConnectionError
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, RESOURCE_DOES_NOT_EXIST

from app.adapters.mlflow_errors import store_outages
from app.errors import ErrorCode, Unavailable


def raising(exc: Exception) -> object:
    @store_outages
    def call() -> None:
        raise exc

    return call


def test_an_unreachable_database_is_the_tracking_store_outage() -> None:
    down = MlflowException(
        "(psycopg2.OperationalError) connection to server failed: Connection refused",
        error_code=INTERNAL_ERROR,
    )
    with pytest.raises(Unavailable) as raised:
        raising(down)()  # type: ignore[operator]
    assert raised.value.code == ErrorCode.TRACKING_STORE_UNAVAILABLE


def test_an_unreachable_bucket_is_the_object_store_outage() -> None:
    def wrapped() -> None:
        try:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1/b")
        except EndpointConnectionError as exc:
            raise RuntimeError("download failed") from exc

    with pytest.raises(Unavailable) as raised:
        store_outages(wrapped)()
    assert raised.value.code == ErrorCode.OBJECT_STORE_UNAVAILABLE


def test_a_client_error_that_mentions_an_outage_word_stays_a_client_error() -> None:
    missing = MlflowException(
        "Registered Model with name=session-timeout-locked not found",
        error_code=RESOURCE_DOES_NOT_EXIST,
    )
    with pytest.raises(MlflowException) as raised:
        raising(missing)()  # type: ignore[operator]
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
