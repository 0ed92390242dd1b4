from collections import Counter

import pytest

from app.core.routing import (
    BUCKETS,
    Role,
    RoutingTable,
    Strategy,
    Variant,
    bucket,
    check_weights,
    pick,
)
from app.errors import InvalidInput


def table(*variants: Variant, shadow_percent: float = 0.0, salt: str = "s1") -> RoutingTable:
    return RoutingTable("churn", 1, salt, Strategy.AB, variants, shadow_percent)


A = Variant("v1", 1, 50, Role.PRIMARY)
B = Variant("v2", 2, 50, Role.CANDIDATE)


def test_buckets_are_stable_and_spread() -> None:
    assert bucket("user-1", "s1") == bucket("user-1", "s1")
    assert bucket("user-1", "s1") != bucket("user-1", "s2") or bucket("user-2", "s1") != bucket(
        "user-2", "s2"
    )
    counts = Counter(bucket(f"k{i}", "s1") * 10 // BUCKETS for i in range(20_000))
    assert all(1_800 < c < 2_200 for c in counts.values())


def test_sticky_keys_and_weights() -> None:
    routing = table(A, B)
    assert all(routing.choose("user-7", 0.0) == routing.choose("user-7", 0.99) for _ in range(5))
    shares = Counter(routing.choose(f"user-{i}", 0.0).name for i in range(4_000))
    assert abs(shares["v1"] / 4_000 - 0.5) < 0.03
    skewed = table(Variant("v1", 1, 95, Role.PRIMARY), Variant("v2", 2, 5, Role.CANDIDATE))
    share = sum(skewed.choose(f"u{i}", 0).name == "v2" for i in range(20_000)) / 20_000
    assert abs(share - 0.05) < 0.01


def test_unkeyed_requests_follow_the_draw() -> None:
    routing = table(A, B)
    assert routing.choose(None, 0.2).name == "v1" and routing.choose(None, 0.7).name == "v2"


def test_zero_weight_and_shadow_variants_never_answer() -> None:
    shadow = Variant("v3", 3, 0, Role.SHADOW)
    retired = Variant("v0", 0, 0, Role.PRIMARY)
    routing = table(Variant("v1", 1, 100, Role.PRIMARY), retired, shadow, shadow_percent=30)
    assert {routing.choose(f"k{i}", 0).name for i in range(1000)} == {"v1"}
    mirrored = sum(routing.mirrors(f"k{i}", 0) for i in range(10_000)) / 10_000
    assert abs(mirrored - 0.30) < 0.02
    assert not table(A, B, shadow_percent=50).mirrors("k", 0.0)  # no shadow variant


def test_pick_edges() -> None:
    assert pick([A, B], 0) is A and pick([A, B], BUCKETS - 1) is B
    with pytest.raises(ValueError):
        pick([], 0)


def test_weights_are_checked() -> None:
    check_weights([A, B])
    for bad in (
        [A],
        [A, Variant("v1", 2, 50, Role.CANDIDATE)],
        [Variant("v1", 1, 120, Role.PRIMARY), Variant("v2", 2, -20, Role.CANDIDATE)],
    ):
        with pytest.raises(InvalidInput):
            check_weights(bad)
