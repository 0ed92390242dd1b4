import pickle

import pytest

from app.errors import (
    Conflict,
    DomainError,
    ErrorCode,
    FieldError,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
    Unavailable,
    UpstreamFailed,
)

ALL = [
    InvalidInput,
    Unauthenticated,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    UpstreamFailed,
    Unavailable,
]


@pytest.mark.parametrize("cls", ALL)
def test_errors_survive_pickling_with_code_fields_and_context(cls: type[DomainError]) -> None:
    error = cls(
        ErrorCode.EXPERIMENT_NOT_FOUND,
        "gone",
        field_errors=(FieldError("name", "bad"),),
        experiment_id="7",
    )
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is cls
    assert back.code is ErrorCode.EXPERIMENT_NOT_FOUND
    assert back.message == "gone"
    assert back.field_errors == (FieldError("name", "bad"),)
    assert back.context == {"experiment_id": "7"}


def test_for_field_names_the_field_and_location() -> None:
    error = InvalidInput.for_field("page_size", "too big", location="query")
    assert error.code is ErrorCode.VALIDATION_FAILED
    assert error.field_errors == (FieldError("page_size", "too big", location="query"),)


def test_categories_are_distinct() -> None:
    assert len({cls.category for cls in ALL}) == len(ALL)
