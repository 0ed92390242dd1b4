from app.core.batching import BatchLimits, pack


def test_a_small_run_is_one_write() -> None:
    (batch,) = pack(["p"] * 3, ["t"], ["m"] * 50)
    assert (len(batch.params), len(batch.tags), len(batch.metrics)) == (3, 1, 50)


def test_nothing_is_no_write() -> None:
    assert pack([], [], []) == []


def test_limits_hold_and_everything_is_kept_in_order() -> None:
    params = [f"p{i}" for i in range(250)]
    tags = [f"t{i}" for i in range(120)]
    metrics = [f"m{i}" for i in range(2500)]
    limits = BatchLimits()
    batches = pack(params, tags, metrics, limits)
    for b in batches:
        assert len(b.params) <= limits.params and len(b.tags) <= limits.tags
        assert len(b.metrics) <= limits.metrics
        assert len(b.params) + len(b.tags) + len(b.metrics) <= limits.total
    assert [p for b in batches for p in b.params] == params
    assert [t for b in batches for t in b.tags] == tags
    assert [m for b in batches for m in b.metrics] == metrics
    assert len(batches) == 3  # 100p+100t+800m, 100p+20t+880m, 50p+820m
