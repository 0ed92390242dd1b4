import pytest

from app.core.paging import query_fingerprint, seal, unseal
from app.errors import ErrorCode, InvalidInput


def test_round_trip() -> None:
    fp = query_fingerprint(["runs", "1", "metrics.a > 0"])
    token = seal("backend-token==", fp)
    assert token and "=" not in token
    assert unseal(token, fp) == "backend-token=="


def test_end_of_listing_and_first_page() -> None:
    assert seal(None, "fp") is None
    assert seal("", "fp") is None
    assert unseal(None, "fp") is None
    assert unseal("", "fp") is None


def test_token_from_another_query_is_refused() -> None:
    token = seal("t", query_fingerprint(["runs", "1", "a"]))
    with pytest.raises(InvalidInput) as refused:
        unseal(token, query_fingerprint(["runs", "1", "b"]))
    assert refused.value.code is ErrorCode.INVALID_PAGE_TOKEN
    assert refused.value.field_errors[0].field == "page_token"


@pytest.mark.parametrize("garbage", ["x", "!!!", "e30", "eyJ2IjoyfQ", "bnVsbA"])
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(InvalidInput):
        unseal(garbage, "fp")


def test_fingerprint_is_stable_and_discriminating() -> None:
    assert query_fingerprint(["a", 1]) == query_fingerprint(["a", "1"])
    assert query_fingerprint(["a", "b"]) != query_fingerprint(["ab"])
