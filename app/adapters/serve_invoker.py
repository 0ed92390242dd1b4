"""`ModelInvoker` over the model server's Serve handle (model multiplexing by version)."""

from __future__ import annotations

import logging
from typing import Any

import ray
import ray.serve.exceptions as serve_errors

from app.core.model_io import RowBlock
from app.core.routing import Backend, Variant
from app.errors import DomainError, ErrorCode, InvalidInput, Unavailable

log = logging.getLogger(__name__)

_REPLICA_GONE: tuple[type[BaseException], ...] = (
    ray.exceptions.RayActorError,
    ray.exceptions.ActorUnavailableError,
    serve_errors.ReplicaUnavailableError,
)

_NO_REPLICA: tuple[type[BaseException], ...] = (
    *_REPLICA_GONE,
    serve_errors.DeploymentUnavailableError,
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


class BackendInvoker:
    """`ModelInvoker` that calls the deployment of each variant's backend (`ray`: the
    model server; `triton`: the Triton server deployment). LLM variants answer on the
    OpenAI routes, not on `/predict`.

    Args:
        invokers: an invoker per backend that `/predict` serves.
    """

    def __init__(self, invokers: dict[Backend, ServeModelInvoker]) -> None:
        self._invokers = invokers

    async def predict(self, model: str, variant: Variant, block: RowBlock) -> list[Any]:
        """See `ModelInvoker.predict`.

        Raises:
            InvalidInput: the variant is an LLM (use `/llm/v1/...`).
            Unavailable: its backend is not part of this service.
        """
        invoker = self._invokers.get(variant.backend)
        if invoker is None:
            if variant.backend is Backend.VLLM:
                raise InvalidInput.for_field(
                    "model",
                    f"{model} {variant.name} is an LLM: call /llm/v1/chat/completions or "
                    "/llm/v1/completions",
                )
            raise Unavailable(
                ErrorCode.BACKEND_UNAVAILABLE, f"The {variant.backend} backend is not running."
            )
        return await invoker.predict(model, variant, block)


class ServeTritonBackend:
    """`TritonBackend` over the Triton server deployment's handle: `prepare` runs on the
    replica that multiplexing sends the version's requests to."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    async def prepare(self, model: str, version: int) -> None:
        """See `TritonBackend.prepare`."""
        model_id = f"{model}/{version}"
        handle = self._handle.options(multiplexed_model_id=model_id)
        try:
            await handle.prepare.remote(model_id)
        except DomainError:
            raise
        except _NO_REPLICA as exc:
            raise Unavailable(
                ErrorCode.BACKEND_UNAVAILABLE,
                f"The Triton server replica is not available ({type(exc).__name__}); retry.",
            ) from None
        except Exception as exc:  # never a bare 500 from a deploy
            log.exception("preparing %s on Triton failed", model_id)
            raise Unavailable(
                ErrorCode.BACKEND_UNAVAILABLE,
                f"Triton could not prepare {model_id}: {type(exc).__name__}; retry.",
            ) from None
