from app.core.abtest import AbTestConfig, VerdictStatus
from app.core.routing import Role, RoutingTable, Strategy, Variant
from app.core.serving_evidence import IntegrationRule, ab_evidence, drain, integration, verdicts
from app.core.serving_stats import VariantStats, one_request


def stats(
    requests: int,
    errors: int = 0,
    at: float = 100.0,
    outcome: float | None = None,
    outcomes: int = 0,
) -> VariantStats:
    value = VariantStats()
    for i in range(requests):
        value = value.merge(one_request(5.0, i >= errors, at))
    for _ in range(outcomes):
        value = value.with_outcome(outcome or 0.0)
    return value


def table(strategy: Strategy, *variants: Variant) -> RoutingTable:
    return RoutingTable("m", 1, "salt", strategy, variants, experiment="exp")


def test_integration_needs_enough_healthy_traffic() -> None:
    routing = table(
        Strategy.REPLACE, Variant("v1", 1, 100, Role.PRIMARY), Variant("v2", 2, 0, Role.SHADOW)
    )
    rule = IntegrationRule(min_requests=20, max_error_rate=0.05)
    assert integration(routing, 3, {}, rule) is None
    assert integration(None, 1, {}, rule) is None
    few = integration(routing, 2, {"v2": stats(5)}, rule)
    assert few is not None and not few.passed and "only 5" in few.details["reason"]
    bad = integration(routing, 2, {"v2": stats(40, errors=4)}, rule)
    assert bad is not None and not bad.passed
    good = integration(routing, 2, {"v2": stats(40, errors=1)}, rule)
    assert good is not None and good.passed


def test_drain_needs_weight_zero_nothing_in_flight_and_quiet() -> None:
    routing = table(
        Strategy.REPLACE, Variant("v2", 2, 100, Role.PRIMARY), Variant("v1", 1, 0, Role.PRIMARY)
    )
    assert drain(routing, 3, {}, {}, 200.0, 30) is None
    serving = drain(routing, 2, {}, {}, 200.0, 30)
    assert serving is not None and not serving.passed
    busy = drain(routing, 1, {"v1": stats(1, at=100.0)}, {"v1": 2}, 200.0, 30)
    assert busy is not None and not busy.passed and "in flight" in busy.details["reason"]
    recent = drain(routing, 1, {"v1": stats(1, at=190.0)}, {}, 200.0, 30)
    assert recent is not None and not recent.passed
    drained = drain(routing, 1, {"v1": stats(1, at=100.0)}, {"v1": 0}, 200.0, 30)
    assert drained is not None and drained.passed


def test_verdicts_only_for_ab_tables_and_the_gate_passes_the_winner() -> None:
    routing = table(
        Strategy.AB, Variant("v1", 1, 50, Role.PRIMARY), Variant("v2", 2, 50, Role.CANDIDATE)
    )
    window = {
        "v1": stats(300, outcome=0.0, outcomes=150),
        "v2": stats(300, outcome=1.0, outcomes=150),
    }
    (verdict,) = verdicts(routing, window, AbTestConfig(min_outcomes=100), {})
    assert verdict.status is VerdictStatus.WINNER and verdict.winner == "v2"
    evidence = ab_evidence(verdict)
    assert evidence is not None and evidence.passed and evidence.details["winner"] == "v2"
    assert ab_evidence(None) is None
    canary = table(Strategy.CANARY, *routing.variants)
    assert verdicts(canary, window, AbTestConfig(), {}) == []
    (reversed_verdict,) = verdicts(
        routing, {"v1": window["v2"], "v2": window["v1"]}, AbTestConfig(min_outcomes=100), {}
    )
    evidence = ab_evidence(reversed_verdict)
    assert evidence is not None and not evidence.passed  # the baseline won
