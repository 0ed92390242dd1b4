"""Hyperparameter search spaces: a small JSON language, parsed and checked before any job
is submitted.

    {"lr": {"loguniform": [0.0001, 0.1]},
     "hidden": {"choice": [[32], [64, 32]]}, # lists are values too (layer sizes)
     "layers": {"randint": [1, 4]},          # integers in [1, 4)
     "dropout": {"uniform": [0.0, 0.5]},
     "batch_size": {"grid": [32, 64]}}       # every value, for grid search

`grid` values are tried exhaustively; the other kinds are sampled (random search) or
proposed by the Bayesian searcher (Optuna's TPE), which takes no grid values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from app.errors import InvalidInput


class Kind(StrEnum):
    """How a parameter's values are drawn."""

    GRID = "grid"
    CHOICE = "choice"
    UNIFORM = "uniform"
    LOGUNIFORM = "loguniform"
    RANDINT = "randint"


class Searcher(StrEnum):
    """How trials are proposed."""

    GRID = "grid"
    RANDOM = "random"
    BAYESIAN = "bayesian"


@dataclass(frozen=True)
class Parameter:
    """One searched parameter."""

    name: str
    kind: Kind
    values: tuple[Any, ...]

    def as_dict(self) -> dict[str, Any]:
        """The JSON form it was written in."""
        return {self.kind.value: list(self.values)}


@dataclass(frozen=True)
class SearchSpace:
    """Every searched parameter."""

    parameters: tuple[Parameter, ...]

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (for lineage)."""
        return {p.name: p.as_dict() for p in self.parameters}

    def grid_size(self) -> int:
        """Trials a grid search runs (the product of the grid sizes)."""
        size = 1
        for p in self.parameters:
            if p.kind is Kind.GRID:
                size *= len(p.values)
        return size


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def parse(spec: Mapping[str, Any], searcher: Searcher) -> SearchSpace:
    """Parse and check a search space for a searcher.

    Raises:
        InvalidInput: a parameter is malformed, or does not suit the searcher; the field
            is `search_space.<name>`.
    """
    if not isinstance(spec, Mapping) or not spec:
        raise InvalidInput.for_field("search_space", "must be a non-empty object")
    parameters = tuple(_parameter(name, body) for name, body in spec.items())
    for p in parameters:
        if searcher is Searcher.GRID and p.kind is not Kind.GRID:
            raise _bad(p.name, "grid search takes only `grid` values")
        if searcher is Searcher.BAYESIAN and p.kind is Kind.GRID:
            raise _bad(p.name, "the Bayesian searcher takes no `grid` values (use `choice`)")
    return SearchSpace(parameters)


def _parameter(name: str, body: Any) -> Parameter:
    if not isinstance(name, str) or not _NAME.match(name):
        raise _bad(str(name), "parameter names are identifiers")
    if not isinstance(body, Mapping) or len(body) != 1:
        raise _bad(name, f'one of {[k.value for k in Kind]}, e.g. {{"uniform": [0, 1]}}')
    ((raw_kind, raw_values),) = body.items()
    try:
        kind = Kind(raw_kind)
    except ValueError:
        raise _bad(name, f"unknown kind {raw_kind!r}") from None
    if not isinstance(raw_values, list) or not raw_values:
        raise _bad(name, "values must be a non-empty list")
    values = tuple(raw_values)
    _check_values(name, kind, values)
    return Parameter(name, kind, values)


def _check_values(name: str, kind: Kind, values: tuple[Any, ...]) -> None:
    if kind in (Kind.GRID, Kind.CHOICE):
        if not all(_scalar(v) or (isinstance(v, list) and all(map(_scalar, v))) for v in values):
            raise _bad(name, "values must be numbers, strings, booleans or lists of them")
        return
    if len(values) != 2 or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        raise _bad(name, f"{kind} takes [low, high]")
    low, high = values
    if not low < high:
        raise _bad(name, "low must be below high")
    if kind is Kind.LOGUNIFORM and low <= 0:
        raise _bad(name, "loguniform needs a positive low")
    if kind is Kind.RANDINT and not (isinstance(low, int) and isinstance(high, int)):
        raise _bad(name, "randint takes integers")


def _scalar(value: Any) -> bool:
    return isinstance(value, int | float | str | bool)


def _bad(name: str, message: str) -> InvalidInput:
    return InvalidInput.for_field(f"search_space.{name}", message)
