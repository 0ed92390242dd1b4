import pytest

from app.core.semver import FIRST, ArtifactFacts, Registered, SemVer, next_semver
from app.errors import Conflict, ErrorCode


def facts(sig: str = "s1", art: str = "a1", meta: str = "m1") -> ArtifactFacts:
    return ArtifactFacts(signature_digest=sig, artifact_digest=art, metadata_digest=meta)


def test_parse_and_order() -> None:
    assert SemVer.parse("2.10.3") == SemVer(2, 10, 3)
    assert str(SemVer(1, 0, 0)) == "1.0.0"
    assert SemVer(1, 10, 0) > SemVer(1, 9, 9)
    for bad in ["1.0", "01.0.0", "1.0.0-rc1", "v1.0.0"]:
        with pytest.raises(ValueError):
            SemVer.parse(bad)


def test_the_rule() -> None:
    v1 = Registered(1, next_semver("m", [], facts()), facts())
    assert v1.semver == FIRST
    v2_semver = next_semver("m", [v1], facts(art="a2"))
    assert v2_semver == SemVer(1, 1, 0)  # same signature, new artifact: MINOR
    v2 = Registered(2, v2_semver, facts(art="a2"))
    assert next_semver("m", [v1, v2], facts(sig="s2", art="a3")) == SemVer(2, 0, 0)  # MAJOR
    # the same artifact with new metadata: PATCH on the latest line
    assert next_semver("m", [v1, v2], facts(art="a1", meta="m2")) == SemVer(1, 1, 1)


def test_the_same_artifact_and_metadata_is_a_duplicate() -> None:
    v1 = Registered(1, FIRST, facts())
    with pytest.raises(Conflict) as refused:
        next_semver("m", [v1], facts())
    assert refused.value.code is ErrorCode.DUPLICATE_VERSION
    assert refused.value.context["version"] == 1


def test_major_resets_minor_and_patch_and_latest_is_by_semver() -> None:
    versions = [
        Registered(1, SemVer(1, 3, 2), facts(art="x")),
        Registered(2, SemVer(2, 0, 0), facts(sig="s2", art="y")),
    ]
    assert next_semver("m", versions, facts(sig="s2", art="z")) == SemVer(2, 1, 0)
    assert next_semver("m", versions, facts(sig="s3", art="z")) == SemVer(3, 0, 0)
