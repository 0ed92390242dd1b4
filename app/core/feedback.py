"""Feedback: ground truth attached to an earlier prediction, as a per-request outcome.

Outcomes are "higher is better" numbers that the A/B test and the canary compare: an
explicit `outcome` is taken as given (a reward, a conversion, minus an error); a `label`
is compared with the prediction, giving the fraction of rows predicted right (for a row
predicted as a list of class scores, its arg-max is the predicted class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.errors import InvalidInput


@dataclass(frozen=True)
class PredictionRef:
    """What the service remembers of a prediction, to join feedback with it."""

    request_id: str
    model: str
    variant: str
    version: int
    at: float
    predictions: tuple[Any, ...]


@dataclass(frozen=True)
class Feedback:
    """Ground truth for one request: a label (per row, or one for all rows) or an outcome."""

    request_id: str
    label: Any = None
    outcome: float | None = None


def outcome_of(ref: PredictionRef, feedback: Feedback) -> float:
    """The request's outcome.

    Raises:
        InvalidInput: neither label nor outcome, or a label list of the wrong length.
    """
    if feedback.outcome is not None:
        return float(feedback.outcome)
    if feedback.label is None:
        raise InvalidInput.for_field("label", "give a label or an outcome")
    labels = _labels(feedback.label, len(ref.predictions))
    hits = sum(
        _predicted(p) == _plain(label) for p, label in zip(ref.predictions, labels, strict=True)
    )
    return float(hits) / len(labels)


def _labels(label: Any, rows: int) -> Sequence[Any]:
    if isinstance(label, list) and rows != 1:
        if len(label) != rows:
            raise InvalidInput.for_field("label", f"the prediction has {rows} rows")
        return label
    if isinstance(label, list) and len(label) == 1 and rows == 1:
        return label
    return [label] * rows


def _predicted(prediction: Any) -> Any:
    if (
        isinstance(prediction, list)
        and prediction
        and all(isinstance(x, int | float) for x in prediction)
    ):
        if len(prediction) == 1:
            return _plain(prediction[0])
        return max(range(len(prediction)), key=prediction.__getitem__)
    return _plain(prediction)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
