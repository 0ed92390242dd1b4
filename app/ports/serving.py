"""Serving: durable traffic state, deployments as the API uses them, and the predict path's
collaborators (routing tables, model invokers, recorders, the prediction log, backends)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from app.core.canary import Rollout
from app.core.deployment import DeploymentView, DeploySpec
from app.core.feedback import Feedback, PredictionRef
from app.core.model_io import RowBlock
from app.core.routing import RoutingTable, Variant
from app.core.serving_stats import VariantStats


@dataclass(frozen=True)
class TrafficState:
    """What the traffic actor reloads when it starts."""

    tables: Mapping[str, RoutingTable]
    rollouts: Mapping[str, Rollout]
    stats: Mapping[str, Mapping[str, VariantStats]]
    p_values: Mapping[tuple[str, str, str], float]
    starts: Mapping[tuple[str, str], Mapping[str, VariantStats]]


class TrafficStore(Protocol):
    """Durable serving state: routing tables, rollouts, stats, predictions and feedback."""

    def load(self) -> TrafficState:
        """Tables, rollouts, stats and running p-values."""
        ...

    def save_table(
        self,
        table: RoutingTable | None,
        model: str,
        rollout: Rollout | None = None,
        clear_rollout: bool = False,
        start: Mapping[str, VariantStats] | None = None,
    ) -> None:
        """Store (None: delete) a model's table, rollout and experiment-start stats in one
        transaction."""
        ...

    def save_stats(self, stats: Mapping[str, Mapping[str, VariantStats]]) -> None:
        """Store the cumulative stats of every variant."""
        ...

    def save_p_value(self, key: tuple[str, str, str], p_value: float) -> None:
        """Store an A/B test's running p-value."""
        ...

    def add_refs(self, refs: Iterable[PredictionRef]) -> None:
        """Remember predictions for feedback."""
        ...

    def ref(self, request_id: str) -> PredictionRef | None:
        """A remembered prediction."""
        ...

    def feedback_value(self, request_id: str) -> tuple[bool, float | None]:
        """Whether feedback exists for a request, and its joined outcome (None: pending)."""
        ...

    def add_feedback(self, feedback: Feedback, value: float | None, at: float) -> None:
        """Store feedback, joined (with its outcome) or pending."""
        ...

    def pending_count(self) -> int:
        """How much feedback waits for its prediction."""
        ...

    def pending_feedback(self, request_ids: Iterable[str]) -> list[Feedback]:
        """Pending feedback for these requests."""
        ...

    def join_feedback(self, request_id: str, value: float) -> None:
        """Record the outcome of pending feedback."""
        ...


class ServingControl(Protocol):
    """Deployments and feedback, as the API uses them (the traffic actor, over Ray)."""

    async def deploy(self, model: str, spec: DeploySpec, actor: str) -> DeploymentView:
        """Deploy versions with a strategy. Raises NotFound, InvalidInput, Conflict."""
        ...

    async def undeploy(self, model: str, actor: str) -> None:
        """Remove the model's routing table. Raises NotFound (`not_deployed`)."""
        ...

    async def view(self, model: str) -> DeploymentView:
        """The deployment with live stats. Raises NotFound (`not_deployed`)."""
        ...

    async def feedback(self, items: list[Feedback]) -> list[str]:
        """Attach ground truth to predictions; a status per item."""
        ...


class RoutingSource(Protocol):
    """The ingress's local copy of the routing tables."""

    def get(self, model: str) -> RoutingTable | None:
        """The model's table, or None if it is not deployed."""
        ...


class ModelInvoker(Protocol):
    """Calls the model that serves a variant."""

    async def predict(self, model: str, variant: Variant, block: RowBlock) -> list[Any]:
        """Predictions, one per row.

        Raises:
            NotFound, Unavailable, UpstreamFailed: the version is missing, does not load,
                or the model failed on the input.
        """
        ...


class ServingRecorder(Protocol):
    """Buffers what happened, for the traffic actor."""

    def started(self, model: str, variant: str) -> None:
        """A request to the variant is in flight."""
        ...

    def finished(self, model: str, variant: str, latency_ms: float, ok: bool) -> None:
        """It ended (ok or not) after `latency_ms`."""
        ...

    def rejected(self, model: str, variant: str) -> None:
        """It ended as the client's mistake (bad input): not served, and not an error of
        the version."""
        ...

    def predicted(self, ref: PredictionRef) -> None:
        """Remember a prediction for feedback."""
        ...

    def compared(self, model: str, variant: str, rows: int, agreed: int) -> None:
        """A shadow answered: of `rows` rows, `agreed` matched the primary's."""
        ...


class PredictionSink(Protocol):
    """The prediction log: remembers (a sample of) what each version was asked and answered."""

    def record(
        self,
        model: str,
        version: int,
        variant: str,
        request_id: str,
        block: RowBlock,
        predictions: Sequence[Any],
    ) -> None:
        """Buffer one request's rows; never blocks, never raises."""
        ...

    async def flush(self) -> None:
        """Write what is buffered; returns once everything recorded before is stored."""
        ...


class TritonBackend(Protocol):
    """The Triton server deployment, seen from the ingress."""

    async def prepare(self, model: str, version: int) -> None:
        """Export the version into the model repository and load it into Triton.

        Raises:
            InvalidInput: it cannot run on Triton (not a PyTorch model on feature rows).
            Unavailable: Triton is not set up or not answering.
        """
        ...


class LlmBackend(Protocol):
    """The vLLM engines of LLM versions."""

    async def ensure(self, model: str, version: int) -> None:
        """Start the version's engine (if it is not running) and wait until it serves.

        Raises:
            InvalidInput: the version holds no LLM model directory.
            Unavailable: the LLM environment is not set up, or the engine did not start.
        """
        ...

    def stream(
        self, model: str, version: int, kind: str, body: dict[str, Any]
    ) -> AsyncIterator[Any]:
        """Send an OpenAI request (`kind`: chat or completions) to the version's engine:
        server-sent-event strings when streaming, else one JSON object."""
        ...

    async def retire(self, model: str, keep: set[int]) -> None:
        """Stop the model's engines except those of the versions in `keep`."""
        ...


class QualityGauges(Protocol):
    """Quality from feedback per variant as metrics (Prometheus, through Ray's metrics)."""

    def publish(self, stats: Mapping[str, Mapping[str, VariantStats]]) -> None:
        """Set every variant's gauges (called every few seconds: unset gauges expire)."""
        ...
