"""`ModelInvoker` over the model server's Serve handle (model multiplexing by version)."""

from __future__ import annotations

import logging
from typing import Any

import ray
import ray.serve.exceptions as serve_errors

from app.core.model_io import RowBlock
from app.core.routing import Variant
from app.errors import DomainError, ErrorCode, Unavailable

log = logging.getLogger(__name__)

_REPLICA_GONE: tuple[type[BaseException], ...] = (
    ray.exceptions.RayActorError,
    ray.exceptions.ActorUnavailableError,
    serve_errors.ReplicaUnavailableError,
)


class ServeModelInvoker:
    """Calls `ModelServer.predict` with Serve's multiplexed model id `"<model>/<version>"`,
    so requests go to replicas that already hold that version. A replica that dies under
    a request is retried on another one, `retries` times.

    Args:
        handle: the model server's deployment handle.
        retries: attempts after a dead replica.
    """

    def __init__(self, handle: Any, retries: int) -> None:
        self._handle = handle
        self._retries = retries
        self._by_model: dict[str, Any] = {}

    async def predict(self, model: str, variant: Variant, block: RowBlock) -> list[Any]:
        """See `ModelInvoker.predict`."""
        model_id = f"{model}/{variant.version}"
        handle = self._by_model.get(model_id)
        if handle is None:
            handle = self._handle.options(multiplexed_model_id=model_id)
            self._by_model[model_id] = handle
        for attempt in range(self._retries + 1):
            try:
                result: list[Any] = await handle.predict.remote(model_id, block)
                return result
            except DomainError:
                raise
            except _REPLICA_GONE as exc:
                log.warning(
                    "model server replica gone during %s (attempt %d): %s",
                    model_id,
                    attempt + 1,
                    type(exc).__name__,
                )
            except (serve_errors.BackPressureError, serve_errors.DeploymentUnavailableError):
                raise Unavailable(
                    ErrorCode.BACKEND_UNAVAILABLE,
                    "The model servers are at capacity; retry shortly.",
                ) from None
        raise Unavailable(
            ErrorCode.BACKEND_UNAVAILABLE,
            "The model server replica failed; retry shortly.",
            model=model_id,
        )
