import pytest

from app.core.search_space import Kind, Searcher, parse
from app.errors import InvalidInput

SPACE = {
    "lr": {"loguniform": [0.0001, 0.1]},
    "hidden": {"choice": [[32], [64, 32]]},
    "layers": {"randint": [1, 4]},
    "dropout": {"uniform": [0.0, 0.5]},
}


def test_parse_round_trip() -> None:
    space = parse(SPACE, Searcher.RANDOM)
    assert [p.kind for p in space.parameters] == [
        Kind.LOGUNIFORM,
        Kind.CHOICE,
        Kind.RANDINT,
        Kind.UNIFORM,
    ]
    assert space.as_dict() == SPACE
    grid = parse({"lr": {"grid": [0.1, 0.01]}, "hidden": {"grid": [8, 16, 32]}}, Searcher.GRID)
    assert grid.grid_size() == 6


@pytest.mark.parametrize(
    ("spec", "searcher", "field"),
    [
        ({}, Searcher.RANDOM, "search_space"),
        ({"lr": {"lognormal": [1, 2]}}, Searcher.RANDOM, "search_space.lr"),
        ({"lr": {"uniform": [1]}}, Searcher.RANDOM, "search_space.lr"),
        ({"lr": {"uniform": [2, 1]}}, Searcher.RANDOM, "search_space.lr"),
        ({"lr": {"loguniform": [0, 1]}}, Searcher.RANDOM, "search_space.lr"),
        ({"layers": {"randint": [1.5, 4]}}, Searcher.RANDOM, "search_space.layers"),
        ({"lr": {"uniform": [0, 1], "choice": [1]}}, Searcher.RANDOM, "search_space.lr"),
        ({"lr": {"choice": []}}, Searcher.RANDOM, "search_space.lr"),
        ({"lr": {"choice": [{"a": 1}]}}, Searcher.RANDOM, "search_space.lr"),
        ({"lr": 0.1}, Searcher.RANDOM, "search_space.lr"),
        ({"1x": {"choice": [1]}}, Searcher.RANDOM, "search_space.1x"),
        ({"lr": {"uniform": [0, 1]}}, Searcher.GRID, "search_space.lr"),
        ({"lr": {"grid": [0.1, 0.2]}}, Searcher.BAYESIAN, "search_space.lr"),
    ],
)
def test_bad_spaces_name_the_parameter(spec: dict, searcher: Searcher, field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse(spec, searcher)
    assert refused.value.field_errors[0].field == field
