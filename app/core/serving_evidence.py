"""What serving tells the registry's gates: integration health, A/B verdicts, draining."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from app.core.abtest import AbTestConfig, Arm, Verdict, VerdictStatus, judge
from app.core.gates import Evidence
from app.core.routing import Role, RoutingTable, Strategy
from app.core.serving_stats import VariantStats


@dataclass(frozen=True)
class IntegrationRule:
    """How much healthy traffic a deployed version needs for the integration check, in a
    recent window (the stats given are that window's)."""

    min_requests: int = 20
    max_error_rate: float = 0.01
    window_s: float | None = None


def integration(
    table: RoutingTable | None,
    version: int,
    stats: Mapping[str, VariantStats],
    rule: IntegrationRule,
) -> Evidence | None:
    """The integration check of a deployed version: it has served enough requests (as a
    variant or a shadow) with a low enough error rate. None when it is not deployed."""
    if table is None:
        return None
    names = [v.name for v in table.variants if v.version == version]
    if not names:
        return None
    total = VariantStats()
    for name in names:
        total = total.merge(stats.get(name, VariantStats()))
    details = {
        "variants": names,
        "requests": total.requests,
        "errors": total.errors,
        "error_rate": round(total.error_rate, 6),
        "p95_ms": total.percentile_ms(0.95),
        "min_requests": rule.min_requests,
        "max_error_rate": rule.max_error_rate,
        "window_s": rule.window_s,
    }
    span = f" in the last {rule.window_s:g} s" if rule.window_s else ""
    if total.requests < rule.min_requests:
        details["reason"] = f"only {total.requests} of {rule.min_requests} requests served{span}"
        return Evidence(False, details)
    if total.error_rate > rule.max_error_rate:
        details["reason"] = (
            f"error rate {total.error_rate:.1%} ({total.errors} of {total.requests} requests"
            f"{span}) above the allowed {rule.max_error_rate:.1%}"
        )
        return Evidence(False, details)
    details["reason"] = (
        f"{total.requests} requests{span}, error rate {total.error_rate:.2%} "
        f"(at most {rule.max_error_rate:.1%} allowed)"
    )
    return Evidence(True, details)


def verdicts(
    table: RoutingTable | None,
    stats: Mapping[str, VariantStats],
    config: AbTestConfig,
    p_values: Mapping[str, float],
) -> list[Verdict]:
    """Each candidate of an A/B table against the baseline (the primary), at this look.

    `p_values` holds each candidate's always-valid p-value after the previous look. With
    more than one candidate, alpha is split between them (Bonferroni).
    """
    if table is None or table.strategy is not Strategy.AB:
        return []
    arms = [v for v in table.variants if v.role in (Role.PRIMARY, Role.CANDIDATE) and v.weight > 0]
    baseline = next((v for v in arms if v.role is Role.PRIMARY), None)
    candidates = [v for v in arms if v.role is Role.CANDIDATE]
    if baseline is None or not candidates:
        return []
    all_arms = tuple(
        Arm(
            v.name,
            stats.get(v.name, VariantStats()).requests,
            v.weight,
            stats.get(v.name, VariantStats()).outcomes,
        )
        for v in arms
    )
    by_name = {a.name: a for a in all_arms}
    split = replace(config, alpha=config.alpha / len(candidates))  # Bonferroni
    return [
        judge(
            by_name[baseline.name],
            by_name[c.name],
            split,
            p_values.get(c.name, 1.0),
            srm_arms=all_arms,
        )
        for c in candidates
    ]


def ab_evidence(verdict: Verdict | None) -> Evidence | None:
    """The A/B gate's evidence: passed when the candidate is the significant winner."""
    if verdict is None:
        return None
    passed = verdict.status is VerdictStatus.WINNER and verdict.winner == verdict.candidate
    details = {
        "status": verdict.status.value,
        "winner": verdict.winner,
        "effect": verdict.effect,
        "confidence_interval": list(verdict.confidence_interval)
        if verdict.confidence_interval
        else None,
        "p_value": verdict.p_value,
        "alpha": verdict.alpha,
        "srm_ok": verdict.srm_ok,
        "srm_p_value": verdict.srm_p_value,
        "outcomes": [verdict.baseline_outcomes, verdict.candidate_outcomes],
        "means": [verdict.baseline_mean, verdict.candidate_mean],
        "planned_n": verdict.planned_n,
        "power": verdict.power,
        "reason": verdict.reason,
        "baseline": verdict.baseline,
        "candidate": verdict.candidate,
    }
    return Evidence(passed, details)


def drain(
    table: RoutingTable | None,
    version: int,
    stats: Mapping[str, VariantStats],
    inflight: Mapping[str, int],
    now: float,
    window_s: float,
) -> Evidence | None:
    """Whether a version is drained: weight 0, nothing in flight, idle for the window.
    None when it is not in the table at all."""
    if table is None:
        return None
    mine = [v for v in table.variants if v.version == version]
    if not mine:
        return None
    weight = sum(v.weight for v in mine if v.role is not Role.SHADOW)
    busy = sum(inflight.get(v.name, 0) for v in mine)
    last = max((stats.get(v.name, VariantStats()).last_request_at for v in mine), default=0.0)
    idle = now - last if last else None
    details = {
        "weight": weight,
        "in_flight": busy,
        "idle_s": None if idle is None else round(idle, 1),
        "window_s": window_s,
    }
    if weight > 0:
        return Evidence(False, {**details, "reason": f"still serves {weight:g}% of traffic"})
    if busy:
        return Evidence(False, {**details, "reason": f"{busy} request(s) in flight"})
    if idle is not None and idle < window_s:
        return Evidence(False, {**details, "reason": f"last request {idle:.0f} s ago"})
    return Evidence(True, {**details, "reason": "drained"})
