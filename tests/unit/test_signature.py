"""Requests checked against a version's signature before the model runs."""

import json

import pytest

from app.core.signature import Signature, conform
from app.errors import InvalidInput

NAMED = Signature.from_mlflow(
    {
        "inputs": json.dumps(
            [
                {"type": "double", "name": "tenure", "required": True},
                {"type": "long", "name": "calls", "required": True},
                {"type": "string", "name": "plan", "required": False},
            ]
        ),
        "outputs": json.dumps([{"type": "double", "name": "1", "required": True}]),
    }
)
TENSOR = Signature.from_mlflow(
    {
        "inputs": json.dumps(
            [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 3]}}]
        )
    }
)


def fields(problem: pytest.ExceptionInfo[InvalidInput]) -> list[str]:
    return [e.field for e in problem.value.field_errors]


def test_lossless_coercions_and_named_plain_rows() -> None:
    records = conform([{"tenure": 40, "calls": 2.0, "extra": "dropped"}], NAMED)
    assert records == [{"tenure": 40.0, "calls": 2}]
    assert isinstance(records[0]["tenure"], float) and isinstance(records[0]["calls"], int)
    assert conform([[40, 2, "gold"]], NAMED) == [{"tenure": 40.0, "calls": 2, "plan": "gold"}]
    assert conform({"tenure": [1, 2], "calls": [3, 4]}, NAMED) == {
        "tenure": [1.0, 2.0],
        "calls": [3, 4],
    }
    assert conform([[1, 2, 3]], TENSOR) == [[1.0, 2.0, 3.0]]
    assert conform([[1, 2]], None) == [[1, 2]]  # no signature: as sent


def test_every_mistake_is_named_by_row_and_column() -> None:
    with pytest.raises(InvalidInput) as wrong_count:
        conform([[40, 2, "gold"], [40, 2]], NAMED)
    assert fields(wrong_count) == ["inputs[1]"]
    assert "the model takes 3: tenure, calls, plan" in wrong_count.value.field_errors[0].message
    with pytest.raises(InvalidInput) as typos:
        conform([{"tenur": 1, "calls": 1.5}, {"tenure": "x", "calls": True}], NAMED)
    assert fields(typos) == [
        "inputs[0].tenure",
        "inputs[0].calls",
        "inputs[1].tenure",
        "inputs[1].calls",
    ]
    with pytest.raises(InvalidInput) as columns:
        conform({"tenure": [1, None], "plan": [1, "a"]}, NAMED)
    assert fields(columns) == ["inputs.tenure[1]", "inputs.calls", "inputs.plan[0]"]
    with pytest.raises(InvalidInput) as tensor:
        conform([[1, 2, 3], [1, 2]], TENSOR)
    assert fields(tensor) == ["inputs[1]"]


def test_records_and_columns_for_a_tensor_must_fit_its_width() -> None:
    """A tensor model got named records of another width through to the model (the
    fuzz's example body on a 4-wide model: 502 `prediction_failed`); now a 422 naming it."""
    assert conform([{"a": 1, "b": 2, "c": 3}], TENSOR) == [{"a": 1, "b": 2, "c": 3}]
    with pytest.raises(InvalidInput) as narrow:
        conform([{"monthly": 70.5, "tenure": 12}], TENSOR)
    assert fields(narrow) == ["inputs[0]"]
    assert "2 values; the model takes 3" in narrow.value.field_errors[0].message
    with pytest.raises(InvalidInput) as text:
        conform([{"a": 1, "b": "x", "c": 3}], TENSOR)
    assert fields(text) == ["inputs[0].b"]
    with pytest.raises(InvalidInput) as columns:
        conform({"a": [1], "b": [2]}, TENSOR)
    assert fields(columns) == ["inputs"]
