from app.core.serving_stats import (
    LATENCY_BOUNDS_MS,
    Outcomes,
    VariantStats,
    latency_bucket,
    merge_all,
    one_request,
)


def test_latency_buckets_bound_the_value() -> None:
    for latency in [0.1, 0.5, 0.6, 3.3, 10.0, 250.0, 1e9]:
        index = latency_bucket(latency)
        assert latency <= LATENCY_BOUNDS_MS[index] or index == len(LATENCY_BOUNDS_MS) - 1
        if index:
            assert latency > LATENCY_BOUNDS_MS[index - 1]


def test_merge_window_and_percentiles() -> None:
    stats = VariantStats()
    for i in range(100):
        stats = stats.merge(one_request(latency_ms=float(i + 1), ok=i % 10 != 0, at=float(i)))
    assert stats.requests == 100 and stats.errors == 10 and stats.error_rate == 0.1
    p50 = stats.percentile_ms(0.5)
    assert p50 is not None and 50 <= p50 <= 50 * 1.25
    assert stats.last_request_at == 99.0
    later = stats.merge(one_request(5.0, False, 200.0))
    window = later.minus(stats)
    assert (window.requests, window.errors) == (1, 1)
    assert VariantStats().percentile_ms(0.5) is None


def test_outcomes() -> None:
    outcomes = Outcomes()
    for value in [1.0, 0.0, 1.0, 1.0]:
        outcomes = outcomes.add(value)
    assert outcomes.mean == 0.75 and abs(outcomes.variance - 0.25) < 1e-12
    assert outcomes.merge(outcomes).n == 8 and outcomes.minus(Outcomes()).n == 4
    assert Outcomes().mean is None and Outcomes().variance == 0.0


def test_merge_all() -> None:
    one = {"v1": one_request(1.0, True, 1.0)}
    merged = merge_all(one, {"v1": one_request(2.0, True, 2.0), "v2": one_request(1, False, 3)})
    assert merged["v1"].requests == 2 and merged["v2"].errors == 1
