"""Feedback: ground truth attached to an earlier prediction, as a per-request outcome.

Outcomes are "higher is better" numbers that the A/B test and the canary compare. An
explicit `outcome` is taken as given (a reward, a conversion, minus an error). A `label`
(one per row, or one for every row) is compared with each row's prediction, by the
prediction's shape:

- class scores as a mapping (`{"0": 0.7, "1": 0.3}`): the class with the top score;
  1 if it equals the label, else 0;
- class scores as a list of two or more numbers (`[0.7, 0.3]`): the index of the top
  score; 1 if it equals the label (a class index), else 0;
- a class (a string, a boolean, an integer, or a float with an integer value): 1 if it
  equals the label, else 0;
- a number in [0, 1] with a 0/1 label: the probability of class 1, class 1 at or above
  the threshold (0.5 by default); 1 if that class is the label, else 0;
- any other number, with a numeric label: a regression value; minus its error (the
  absolute error by default, or the squared error).

The request's outcome is the mean over its rows (the accuracy for classes). Labels are
compared as values, so `1`, `1.0` and `"1"` name the same class. A label that cannot be
compared with its prediction (a string for class scores as a list, a mapping, a class
that is not a number for a regression value) is refused with `InvalidInput` naming it:
it is never scored as wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from app.errors import InvalidInput


class RegressionMetric(StrEnum):
    """How a regression value's error becomes an outcome (higher is better)."""

    NEG_ABS_ERROR = "neg_abs_error"
    NEG_SQUARED_ERROR = "neg_squared_error"


@dataclass(frozen=True)
class FeedbackRules:
    """The declared parts of the rules: the binary threshold, the regression metric."""

    binary_threshold: float = 0.5
    regression_metric: RegressionMetric = RegressionMetric.NEG_ABS_ERROR


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


def outcome_of(
    ref: PredictionRef,
    feedback: Feedback,
    rules: FeedbackRules = FeedbackRules(),
    field: str = "label",
) -> float:
    """The request's outcome.

    Raises:
        InvalidInput: neither label nor outcome, a label list of the wrong length, or a
            label that cannot be compared with its prediction (naming `field`).
    """
    if feedback.outcome is not None:
        return float(feedback.outcome)
    if feedback.label is None:
        raise InvalidInput.for_field(field, "give a label or an outcome")
    labels = _labels(feedback.label, len(ref.predictions), field)
    pairs = zip(ref.predictions, labels, strict=True)
    scores = [_row(prediction, label, rules, field) for prediction, label in pairs]
    return sum(scores) / len(scores)


def _labels(label: Any, rows: int, field: str) -> Sequence[Any]:
    if isinstance(label, list) and rows != 1:
        if len(label) != rows:
            raise InvalidInput.for_field(field, f"the prediction has {rows} rows")
        return label
    if isinstance(label, list) and len(label) == 1 and rows == 1:
        return label
    return [label] * rows


def _row(prediction: Any, label: Any, rules: FeedbackRules, field: str) -> float:
    if isinstance(label, Mapping | list):
        raise InvalidInput.for_field(field, "a row's label is one value (a class or a number)")
    if isinstance(prediction, Mapping) and prediction:
        top = max(prediction, key=lambda k: _number(prediction[k], field))
        return float(_same_class(top, label))
    if isinstance(prediction, list) and len(prediction) == 1:
        prediction = prediction[0]
    if isinstance(prediction, list) and len(prediction) > 1:
        index = max(range(len(prediction)), key=lambda i: _number(prediction[i], field))
        if _as_number(label) is None:
            raise InvalidInput.for_field(
                field, f"{label!r} is not a class index of scores given as a list"
            )
        return float(_same_class(index, label))
    return _scalar(prediction, label, rules, field)


def _scalar(prediction: Any, label: Any, rules: FeedbackRules, field: str) -> float:
    if isinstance(prediction, str | bool) or prediction is None:
        return float(_same_class(prediction, label))
    if not isinstance(prediction, int | float) or isinstance(prediction, bool):
        raise InvalidInput.for_field(field, "the prediction is not a class, a score or a value")
    value, target = float(prediction), _as_number(label)
    if value.is_integer() and (target is None or target.is_integer()):
        return float(_same_class(prediction, label))
    if target is None:
        raise InvalidInput.for_field(
            field, f"{label!r} is not a number, and the prediction {prediction} is a value"
        )
    if target in (0.0, 1.0) and 0.0 <= value <= 1.0:
        return float((value >= rules.binary_threshold) == (target == 1.0))
    error = value - target
    if rules.regression_metric is RegressionMetric.NEG_SQUARED_ERROR:
        return -(error * error)
    return -abs(error)


def _same_class(predicted: Any, label: Any) -> bool:
    """Whether a predicted class and a label name the same class (`1`, `1.0`, `"1"`)."""
    left, right = _as_number(predicted), _as_number(label)
    if left is not None and right is not None:
        return left == right
    return str(predicted) == str(label)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _number(value: Any, field: str) -> float:
    number = _as_number(value)
    if number is None or isinstance(value, str):
        raise InvalidInput.for_field(field, "the prediction's class scores are not numbers")
    return number
