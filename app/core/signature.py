"""A version's input signature, and requests checked against it before the model runs.

A client's mistake (a missing column, a wrong number of values, a string for a number)
is answered 422 naming the row and the column, and never reaches the model: it is not
the version's error. Lossless coercions are made on the way (an integer for a double
column becomes a float, a float with an integer value for a long column an integer), so
a JSON client that sends `40` for a double feature is served. Plain rows (lists) of a
model with named columns become records with those names (the prediction log then knows
each feature by name).

Rules, by the signature's input type:

| type                 | accepted                                  | becomes      |
|----------------------|-------------------------------------------|--------------|
| double, float        | numbers (not booleans)                     | float        |
| long, integer        | integers, floats with an integer value     | int          |
| boolean              | booleans                                   | bool         |
| string               | strings                                    | str          |
| binary, datetime ... | anything (the model's own checks apply)    | as sent      |

Missing required columns are refused; columns the signature does not name are dropped
(MLflow's schema enforcement ignores them too). A tensor signature takes rows of numbers
of the tensor's width.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.core.model_io import RowBlock
from app.errors import ErrorCode, FieldError, InvalidInput

_MAX_PROBLEMS = 20
_FLOATS = frozenset({"double", "float"})
_INTEGERS = frozenset({"long", "integer"})


@dataclass(frozen=True)
class Column:
    """One named input column."""

    name: str
    type: str
    required: bool = True


@dataclass(frozen=True)
class Signature:
    """A version's inputs (named columns, or a tensor), its outputs and an input example."""

    columns: tuple[Column, ...] = ()
    tensor_dtype: str | None = None
    tensor_shape: tuple[int, ...] | None = None
    outputs: tuple[Mapping[str, Any], ...] = ()
    input_example: Any = None

    @classmethod
    def from_mlflow(cls, signature: Mapping[str, Any], input_example: Any = None) -> Signature:
        """From MLflow's `ModelSignature.to_dict()` (inputs and outputs as JSON text)."""
        inputs = _specs(signature.get("inputs"))
        outputs = tuple(_specs(signature.get("outputs")))
        tensor = next((s for s in inputs if s.get("type") == "tensor"), None)
        if tensor is not None:
            spec = tensor.get("tensor-spec", {})
            shape = tuple(int(d) for d in spec.get("shape", ()))
            return cls((), str(spec.get("dtype", "float64")), shape, outputs, input_example)
        columns = tuple(
            Column(str(s["name"]), str(s.get("type", "")), bool(s.get("required", True)))
            for s in inputs
            if s.get("name") is not None
        )
        return cls(columns, None, None, outputs, input_example)

    @property
    def width(self) -> int | None:
        """How many values a plain row has (None: not fixed)."""
        if self.columns:
            return len(self.columns)
        if self.tensor_shape and len(self.tensor_shape) == 2 and self.tensor_shape[1] > 0:
            return self.tensor_shape[1]
        return None


def conform(block: RowBlock, signature: Signature | None) -> RowBlock:
    """The request's rows as the version takes them (see the module's rules).

    Raises:
        InvalidInput: every problem named `inputs[<row>].<column>` (records and plain
            rows) or `inputs.<column>[<row>]` (columns), up to 20 of them.
    """
    if signature is None or (not signature.columns and signature.tensor_dtype is None):
        return block
    problems: list[FieldError] = []
    if signature.tensor_dtype is not None:
        result: RowBlock = _tensor_rows(block, signature, problems)
    elif isinstance(block, dict):
        result = _columns(block, signature.columns, problems)
    else:
        result = _records(block, signature.columns, problems)
    if problems:
        shown = "; ".join(f"{p.field}: {p.message}" for p in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise InvalidInput(
            ErrorCode.VALIDATION_FAILED,
            f"The inputs do not match the version's signature: {shown}{more}.",
            field_errors=tuple(problems[:_MAX_PROBLEMS]),
        )
    return result


def _records(
    block: list[dict[str, Any]] | list[list[Any]],
    columns: Sequence[Column],
    problems: list[FieldError],
) -> list[dict[str, Any]]:
    names = [c.name for c in columns]
    out = []
    for index, row in enumerate(block):
        record: Mapping[str, Any]
        if isinstance(row, list):
            if len(row) != len(columns):
                _problem(
                    problems,
                    f"inputs[{index}]",
                    f"{len(row)} values; the model takes {len(columns)}: {', '.join(names)}",
                )
                continue
            record = dict(zip(names, row, strict=True))
        elif isinstance(row, Mapping):
            record = row
        else:
            continue  # check_block lets only lists and mappings through
        out.append(_record(record, columns, f"inputs[{index}]", problems))
    return out


def _record(
    row: Mapping[str, Any], columns: Sequence[Column], where: str, problems: list[FieldError]
) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for column in columns:
        if column.name not in row or row[column.name] is None:
            if column.required:
                _problem(problems, f"{where}.{column.name}", f"missing ({column.type})")
            continue
        record[column.name] = _value(
            row[column.name], column.type, f"{where}.{column.name}", problems
        )
    return record


def _columns(
    block: dict[str, list[Any]], columns: Sequence[Column], problems: list[FieldError]
) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for column in columns:
        values = block.get(column.name)
        if values is None:
            if column.required:
                _problem(problems, f"inputs.{column.name}", f"missing ({column.type})")
            continue
        where = f"inputs.{column.name}"
        out[column.name] = [
            _missing(column, f"{where}[{i}]", problems)
            if v is None
            else _value(v, column.type, f"{where}[{i}]", problems)
            for i, v in enumerate(values)
        ]
    return out


def _tensor_rows(block: RowBlock, signature: Signature, problems: list[FieldError]) -> RowBlock:
    width = signature.width
    kind = "float" if str(signature.tensor_dtype).startswith("float") else "long"
    if isinstance(block, dict):  # columns: the model server orders them; their number fits
        if width is not None and len(block) != width:
            _problem(problems, "inputs", f"{len(block)} columns; the model takes {width}")
        return block
    if not block or not isinstance(block[0], list):  # records: as many values as the tensor
        for index, record in enumerate(block):
            if isinstance(record, Mapping) and width is not None and len(record) != width:
                _problem(
                    problems, f"inputs[{index}]", f"{len(record)} values; the model takes {width}"
                )
            elif isinstance(record, Mapping):
                for name, value in record.items():
                    _value(value, kind, f"inputs[{index}].{name}", problems)
        return block
    out: list[list[Any]] = []
    for index, row in enumerate(block):
        assert isinstance(row, list)
        if width is not None and len(row) != width:
            _problem(problems, f"inputs[{index}]", f"{len(row)} values; the model takes {width}")
            continue
        where = f"inputs[{index}]"
        out.append([_value(v, kind, f"{where}[{j}]", problems) for j, v in enumerate(row)])
    return out


def _value(value: Any, kind: str, where: str, problems: list[FieldError]) -> Any:
    if kind in _FLOATS:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return _problem(problems, where, f"{value!r} is not a number ({kind})", value)
    if kind in _INTEGERS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _problem(problems, where, f"{value!r} is not an integer ({kind})", value)
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            return _problem(problems, where, f"{value!r} is not an integer ({kind})", value)
        return int(value)
    if kind == "boolean" and not isinstance(value, bool):
        return _problem(problems, where, f"{value!r} is not a boolean", value)
    if kind == "string" and not isinstance(value, str):
        return _problem(problems, where, f"{value!r} is not a string", value)
    return value


def _missing(column: Column, where: str, problems: list[FieldError]) -> Any:
    """A null value: refused for a required column, kept (None) for an optional one."""
    if column.required:
        _problem(problems, where, f"missing ({column.type})")
    return None


def _problem(problems: list[FieldError], where: str, message: str, value: Any = None) -> Any:
    problems.append(FieldError(where, message))
    return value


def _specs(text: Any) -> list[Mapping[str, Any]]:
    if not text:
        return []
    parsed = json.loads(text) if isinstance(text, str) else text
    return [s for s in parsed if isinstance(s, Mapping)]
