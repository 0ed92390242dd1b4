import numpy as np
import pandas as pd
import pytest

from app.core.model_io import as_model_input, check_block, rows_of, split_output, to_jsonable
from app.errors import InvalidInput


def test_the_three_shapes() -> None:
    records = check_block([{"a": 1, "b": 2}, {"a": 3, "b": 4}], 100)
    columns = check_block({"a": [1, 3], "b": [2, 4]}, 100)
    rows = check_block([[1, 2], [3, 4]], 100)
    assert rows_of(records) == rows_of(columns) == rows_of(rows) == 2
    for block in (records, columns):
        frame = as_model_input(False, None, None, [block])
        assert list(frame.columns) == ["a", "b"] and frame.shape == (2, 2)
    named = as_model_input(False, None, ["a", "b"], [rows])
    assert list(named.columns) == ["a", "b"]
    tensor = as_model_input(True, "float32", ["b", "a"], [records, rows])
    assert tensor.dtype == np.float32 and tensor.tolist() == [[2, 1], [4, 3], [1, 2], [3, 4]]


@pytest.mark.parametrize(
    "bad", [[], {}, "x", [1, 2], {"a": [1], "b": [1, 2]}, [[1], [1, 2]], {"a": 1}, [{"a": 1}, [1]]]
)
def test_bad_inputs(bad: object) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_block(bad, 100)
    assert refused.value.field_errors[0].field == "inputs"


def test_row_limit() -> None:
    with pytest.raises(InvalidInput):
        check_block([[1]] * 11, 10)


def test_split_and_jsonable() -> None:
    output = np.arange(10).reshape(5, 2)
    parts = split_output(output, [2, 3])
    assert parts is not None and [to_jsonable(p) for p in parts] == [
        [[0, 1], [2, 3]],
        [[4, 5], [6, 7], [8, 9]],
    ]
    assert split_output(np.arange(4), [2, 3]) is None
    assert split_output(3.0, [1]) is None
    frame = pd.DataFrame({"label": [0, 1], "score": [0.2, 0.9]})
    assert to_jsonable(frame) == [{"label": 0, "score": 0.2}, {"label": 1, "score": 0.9}]
    assert to_jsonable(pd.DataFrame({"y": [1.5, 2.5]})) == [1.5, 2.5]
    assert to_jsonable(pd.Series([1, 2])) == [1, 2]
    assert to_jsonable([np.int64(1), 2]) == [1, 2]
    assert to_jsonable(np.float32(0.5)) == [0.5]
