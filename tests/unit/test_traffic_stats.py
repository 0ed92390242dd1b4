"""The traffic actor's statistics: the integration check counts a recent window only, and
feedback that cannot be compared with its prediction is refused before anything is kept.
(A real SQLite store; no Ray: the class runs on the actor's event loop.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from actors.traffic_stats import TrafficStats
from app.adapters.traffic_store import SqlTrafficStore
from app.core.deployment import ServingBatch
from app.core.feedback import Feedback, PredictionRef
from app.core.routing import Role, RoutingTable, Strategy, Variant
from app.core.serving_stats import VariantStats, one_request
from app.errors import InvalidInput
from app.settings import ServingSettings

TABLE = RoutingTable("m", 1, "salt", Strategy.REPLACE, (Variant("v1", 1, 100.0, Role.PRIMARY),))


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def stats(tmp_path: Path, clock: Clock) -> TrafficStats:
    store = SqlTrafficStore(f"sqlite:///{tmp_path / 'state.db'}")
    config = ServingSettings(integration_window_s=60, integration_min_requests=20)
    return TrafficStats(config, store, store.load(), clock)


def traffic(requests: int, errors: int) -> ServingBatch:
    total = VariantStats()
    for i in range(requests):
        total = total.merge(one_request(5.0, ok=i >= errors, at=0.0))
    return ServingBatch("replica", stats={"m": {"v1": total}})


def test_the_integration_check_counts_only_the_recent_window(tmp_path: Path) -> None:
    clock = Clock()
    live = stats(tmp_path, clock)
    asyncio.run(live.record(traffic(200, 40)))  # an old canary's errors
    live.snapshot()
    failing = live.integration(TABLE, 1)
    assert failing is not None and not failing.passed
    assert "error rate 20.0% (40 of 200 requests in the last 60 s)" in failing.details["reason"]
    clock.now += 120  # the errors age out of the window
    live.snapshot()
    asyncio.run(live.record(traffic(50, 0)))
    passing = live.integration(TABLE, 1)
    assert passing is not None and passing.passed, passing
    assert passing.details["requests"] == 50 and passing.details["errors"] == 0


def test_incomparable_labels_are_refused_and_nothing_is_kept(tmp_path: Path) -> None:
    live = stats(tmp_path, Clock())
    ref = PredictionRef("r1", "m", "v1", 1, 0.0, ({"0": 0.8, "1": 0.2},))
    batch = ServingBatch("replica", refs=(ref,))
    asyncio.run(live.record(batch))
    with pytest.raises(InvalidInput) as refused:
        asyncio.run(live.feedback([Feedback("r0"), Feedback("r1", label={"class": 1})]))
    assert [e.field for e in refused.value.field_errors] == ["items[1].label"]
    assert live.of("m").get("v1", VariantStats()).outcomes.n == 0
    assert asyncio.run(live.feedback([Feedback("r1", label=0)])) == ["recorded"]
    assert live.of("m")["v1"].outcomes.mean == 1.0  # the arg-max class: right


def test_feedback_racing_its_predictions_is_joined_exactly_once(tmp_path: Path) -> None:
    # feedback looked for its prediction while the prediction's batch looked for pending
    # feedback: each missed the other and the label was never counted (the decisions
    # benchmark lost 10-40% of its labels this way)
    live = stats(tmp_path, Clock())
    refs = [PredictionRef(f"r{i}", "m", "v1", 1, 0.0, ({"0": 0.8, "1": 0.2},)) for i in range(40)]

    async def race() -> list[list[str]]:
        tasks = []
        for start in range(0, 40, 10):
            chunk = refs[start : start + 10]
            labels = [Feedback(r.request_id, label=0) for r in chunk]
            batch = ServingBatch("replica", refs=tuple(chunk))
            tasks += [live.feedback(labels), live.record(batch)]
        return [s for s in await asyncio.gather(*tasks) if s is not None]

    statuses = asyncio.run(race())
    assert {s for batch in statuses for s in batch} <= {"pending", "recorded"}
    assert sum(len(batch) for batch in statuses) == 40  # one status per label
    assert live.of("m")["v1"].outcomes.n == 40 and live.of("m")["v1"].outcomes.mean == 1.0


def test_an_experiment_ahead_of_the_stored_stats_counts_from_the_stored_stats(
    tmp_path: Path,
) -> None:
    # the actor stored an experiment's start, then died before the stats it was taken
    # from were stored: the restarted actor's verdict must not count the lost outcomes
    # as negative
    store = SqlTrafficStore(f"sqlite:///{tmp_path / 'state.db'}")
    table = RoutingTable(
        "m",
        1,
        "salt",
        Strategy.AB,
        (Variant("v1", 1, 50.0, Role.PRIMARY), Variant("v2", 2, 50.0, Role.CANDIDATE)),
        experiment="e1",
    )
    stored = {"v1": VariantStats(), "v2": VariantStats()}
    for _ in range(10):
        stored = {name: value.with_outcome(1.0) for name, value in stored.items()}
    store.save_stats({"m": stored})
    ahead = {name: value.with_outcome(0.0).with_outcome(0.0) for name, value in stored.items()}
    store.save_table(table, "m", start=ahead)
    live = TrafficStats(ServingSettings(), store, store.load(), Clock())
    [verdict] = live.verdicts(table)
    assert (verdict.baseline_outcomes, verdict.candidate_outcomes) == (0, 0)
    refs = tuple(
        PredictionRef(f"r{i}", "m", "v2", 2, 0.0, ({"0": 0.8, "1": 0.2},)) for i in range(3)
    )
    asyncio.run(live.record(ServingBatch("replica", refs=refs)))
    assert (
        asyncio.run(live.feedback([Feedback(r.request_id, label=0) for r in refs]))
        == ["recorded"] * 3
    )
    [verdict] = live.verdicts(table)
    assert (verdict.baseline_outcomes, verdict.candidate_outcomes) == (0, 3)
    assert verdict.candidate_mean == 1.0
