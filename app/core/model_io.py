"""Prediction inputs and outputs: the JSON shapes clients send, and what models take.

A request's rows come as records (`[{"f0": 1.0, ...}, ...]`), as columns
(`{"f0": [1.0, ...], ...}`) or as plain rows (`[[1.0, ...], ...]`). The model server turns
the rows of one or more requests into one model input (a DataFrame, or an array for a
tensor signature), and splits the output back per request when it has one row per row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from app.errors import InvalidInput

RowBlock = list[dict[str, Any]] | dict[str, list[Any]] | list[list[Any]]


def check_block(inputs: Any, max_rows: int) -> RowBlock:
    """Validate a request's `inputs`.

    Raises:
        InvalidInput: not one of the three shapes, empty, ragged, or too many rows.
    """
    if isinstance(inputs, Mapping):
        lengths = {len(v) if isinstance(v, list) else -1 for v in inputs.values()}
        if not inputs or -1 in lengths or len(lengths) != 1:
            raise _bad("as columns, every value must be a list and all lists the same length")
        block: RowBlock = dict(inputs)
    elif isinstance(inputs, list) and inputs and all(isinstance(r, Mapping) for r in inputs):
        block = [dict(r) for r in inputs]
    elif isinstance(inputs, list) and inputs and all(isinstance(r, list) for r in inputs):
        if len({len(r) for r in inputs}) != 1:
            raise _bad("as rows, every row must have the same length")
        block = inputs
    else:
        raise _bad("must be a non-empty list of records, a list of rows, or a map of columns")
    if rows_of(block) > max_rows:
        raise _bad(f"at most {max_rows} rows per request")
    if rows_of(block) == 0:
        raise _bad("must hold at least one row")
    return block


def rows_of(block: RowBlock) -> int:
    """How many rows a block holds."""
    if isinstance(block, dict):
        return len(next(iter(block.values()), []))
    return len(block)


def as_model_input(
    tensor: bool, dtype: str | None, columns: Sequence[str] | None, blocks: Sequence[RowBlock]
) -> pd.DataFrame | np.ndarray:
    """The rows of `blocks` as one model input: an array for a tensor signature, else a
    DataFrame (named by the signature's columns when rows come without names)."""
    if tensor:
        rows = [row for block in blocks for row in plain_rows(block, columns)]
        return np.asarray(rows, dtype=dtype)
    frames = [_frame(block, columns) for block in blocks]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def split_output(output: Any, sizes: Sequence[int]) -> list[Any] | None:
    """The output cut back into per-request parts, or None if it is not one row per row."""
    total = sum(sizes)
    try:
        length = len(output)
    except TypeError:
        return None
    if length != total:
        return None
    parts, start = [], 0
    for size in sizes:
        stop = start + size
        if isinstance(output, pd.DataFrame | pd.Series):
            parts.append(output.iloc[start:stop])
        else:
            parts.append(output[start:stop])
        start = stop
    return parts


def to_jsonable(output: Any) -> list[Any]:
    """A model output as a JSON list: one item per row."""
    if isinstance(output, pd.DataFrame):
        if output.shape[1] == 1:
            return to_jsonable(output.iloc[:, 0])
        parsed: list[Any] = json.loads(output.to_json(orient="records"))
        return parsed
    if isinstance(output, pd.Series):
        return to_jsonable(output.to_numpy())
    if isinstance(output, np.ndarray):
        result: list[Any] = output.tolist()
        return result
    if isinstance(output, list | tuple):
        return [
            item.tolist() if isinstance(item, np.ndarray | np.generic) else item for item in output
        ]
    return [output.tolist() if isinstance(output, np.generic) else output]


def plain_rows(block: RowBlock, columns: Sequence[str] | None) -> list[list[Any]]:
    """A block as plain rows, its columns in the order of `columns` when given."""
    if isinstance(block, dict):
        names = list(columns) if columns else list(block)
        return [list(row) for row in zip(*(block[n] for n in names), strict=True)]
    if block and isinstance(block[0], dict):
        records: list[dict[str, Any]] = block
        names = list(columns) if columns else list(records[0])
        return [[record[n] for n in names] for record in records]
    return [list(row) for row in block]


def _frame(block: RowBlock, columns: Sequence[str] | None) -> pd.DataFrame:
    if isinstance(block, dict):
        return pd.DataFrame(block)
    if block and isinstance(block[0], dict):
        return pd.DataFrame.from_records(block)
    return pd.DataFrame(block, columns=list(columns) if columns else None)


def _bad(message: str) -> InvalidInput:
    return InvalidInput.for_field("inputs", message)
