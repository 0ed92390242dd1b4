"""Findings about a model, from the evidence the service already holds: deterministic,
each with a stable id, a kind, a severity, when it started, the numbers behind it and
where the evidence is. An assistant may explain them afterwards; the findings never
depend on it.

| kind                 | from                                        | severity |
|----------------------|---------------------------------------------|----------|
| feature_drift        | a drifted input feature in a version's latest evaluation | warning |
| prediction_drift     | the predictions' distribution drifted       | warning  |
| quality_gap          | an A/B verdict: the candidate is significantly worse | warning |
| candidate_better     | an A/B verdict: the candidate is significantly better | info |
| canary_rolled_back   | a rollout rolled back in the window         | warning  |
| error_rate           | a live variant failing >= 1% of >= 20 requests | warning, 5%: critical |
| latency              | a live variant's p50 >= 3x another's (>= 50 requests each) | warning |
| stale_features       | a live version's feature view is stale (or never materialized) | warning |
| promotion_refused    | a refused promotion in the window           | info     |
| no_reference         | a live version without a drift reference    | info     |
| drift_after_deploy   | a drift that began within 6 h after a deploy | info    |
| drift_after_stale_features | a drift that began while the version's features were stale | info |

A healthy model has no finding above `info`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from app.core.audit import EventType
from app.core.drift import PREDICTION
from app.core.features import Freshness
from app.core.findings import Evidence, Finding, FindingKind, Severity, ViewFreshness
from app.core.monitoring import Alert

CORRELATION_S = 6 * 3600.0
ERROR_WARNING, ERROR_CRITICAL, ERROR_MIN_REQUESTS = 0.01, 0.05, 20
LATENCY_FACTOR, LATENCY_MIN_REQUESTS = 3.0, 50


def diagnose(evidence: Evidence, only_version: int | None = None) -> list[Finding]:
    """Every finding, most severe first (then by when it started)."""
    found = [
        *_drift(evidence),
        *_verdicts(evidence),
        *_events(evidence),
        *_variants(evidence),
        *_stale(evidence),
    ]
    found += _correlations(evidence, found)
    if only_version is not None:
        found = [f for f in found if f.version in (None, only_version)]
    return sorted(found, key=lambda f: (-f.severity.rank, f.started_at or 0.0, f.id))


def _links(evidence: Evidence, *paths: str) -> tuple[str, ...]:
    return tuple(f"{evidence.api_base}/models/{evidence.model}{path}" for path in paths)


def _drift(evidence: Evidence) -> list[Finding]:
    out = []
    for version, body in sorted(evidence.drift.items()):
        if not body.get("reference"):
            if _live(evidence, version):
                out.append(_no_reference(evidence, version))
            continue
        scores = {f["feature"]: f for f in body.get("features", [])}
        for feature in body.get("drifted", []):
            out.append(_drifted(evidence, version, feature, scores.get(feature, {}), body))
    return out


def _drifted(
    evidence: Evidence,
    version: int,
    feature: str,
    score: Mapping[str, Any],
    body: Mapping[str, Any],
) -> Finding:
    window = body.get("window", {})
    started = _alert_start(evidence.alerts, version, feature) or window.get("start")
    prediction = feature == PREDICTION
    kind = FindingKind.PREDICTION_DRIFT if prediction else FindingKind.FEATURE_DRIFT
    subject = "prediction" if prediction else feature
    numbers = {
        key: score.get(key)
        for key in ("psi", "ks_statistic", "p_value", "wasserstein", "js_distance")
        if score.get(key) is not None
    }
    numbers |= {"window_rows": window.get("rows"), "reference": body.get("reference_source")}
    psi = score.get("psi")
    title = f"{'predictions' if prediction else f'feature {feature}'} of v{version} drifted" + (
        f" (PSI {psi:.2f})" if isinstance(psi, int | float) else ""
    )
    return Finding(
        f"{kind.value}-v{version}-{subject}",
        kind,
        Severity.WARNING,
        title,
        version,
        subject,
        started,
        numbers,
        _links(evidence, "/monitoring", f"/monitoring/report?version={version}"),
    )


def _no_reference(evidence: Evidence, version: int) -> Finding:
    return Finding(
        f"no_reference-v{version}",
        FindingKind.NO_REFERENCE,
        Severity.INFO,
        f"v{version} has no drift reference yet (its first live rows will be)",
        version,
        None,
        None,
        {},
        _links(evidence, "/monitoring"),
    )


def _alert_start(alerts: Iterable[Alert], version: int, feature: str) -> float | None:
    starts = [a.opened_at for a in alerts if a.version == version and feature in a.features]
    return min(starts) if starts else None


def _verdicts(evidence: Evidence) -> list[Finding]:
    view = evidence.deployment
    if view is None:
        return []
    out = []
    for verdict in view.verdicts:
        if verdict.winner is None:
            continue
        base, cand = view.table.variant(verdict.baseline), view.table.variant(verdict.candidate)
        if base is None or cand is None:
            continue
        worse = verdict.winner == verdict.baseline
        kind = FindingKind.QUALITY_GAP if worse else FindingKind.CANDIDATE_BETTER
        outcomes = verdict.baseline_outcomes + verdict.candidate_outcomes
        title = (
            f"v{cand.version} quality {verdict.candidate_mean:.3f} vs v{base.version} "
            f"{verdict.baseline_mean:.3f} over {outcomes:,} outcomes, significant"
        )
        numbers = {
            "candidate_mean": verdict.candidate_mean,
            "baseline_mean": verdict.baseline_mean,
            "effect": verdict.effect,
            "confidence_interval": list(verdict.confidence_interval or ()),
            "p_value": verdict.p_value,
            "outcomes": [verdict.baseline_outcomes, verdict.candidate_outcomes],
            "baseline_version": base.version,
        }
        severity = Severity.WARNING if worse else Severity.INFO
        out.append(
            Finding(
                f"{kind.value}-v{cand.version}",
                kind,
                severity,
                title,
                cand.version,
                cand.name,
                None,
                numbers,
                _links(evidence, "/deployment"),
            )
        )
    return out


def _events(evidence: Evidence) -> list[Finding]:
    out = []
    for event in evidence.events:
        at = event.at.timestamp()
        if not evidence.since <= at <= evidence.until:
            continue
        if event.type is EventType.ROLLOUT_ROLLED_BACK:
            reason = str(event.payload.get("reason", ""))
            out.append(
                Finding(
                    f"canary_rolled_back-v{event.version}-{event.seq}",
                    FindingKind.CANARY_ROLLED_BACK,
                    Severity.WARNING,
                    f"the canary of v{event.version} was rolled back: {reason}",
                    event.version,
                    None,
                    at,
                    {"reason": reason, "evidence": dict(event.payload.get("evidence", {}))},
                    _links(evidence, "/audit", "/deployment"),
                )
            )
        elif event.type is EventType.PROMOTION_REFUSED:
            checks = event.payload.get("checks", [])
            failed = [c["gate"] for c in checks if not (c.get("passed") or c.get("waived"))]
            out.append(
                Finding(
                    f"promotion_refused-v{event.version}-{event.seq}",
                    FindingKind.PROMOTION_REFUSED,
                    Severity.INFO,
                    f"the promotion of v{event.version} to {event.payload.get('target')} was "
                    f"refused ({', '.join(failed) or 'gates'})",
                    event.version,
                    None,
                    at,
                    {"target": event.payload.get("target"), "failed": failed},
                    _links(evidence, "/audit"),
                )
            )
    return out


def _variants(evidence: Evidence) -> list[Finding]:
    view = evidence.deployment
    if view is None:
        return []
    live = [v for v in view.table.serving() if v.name in view.stats]
    out = []
    for variant in live:
        stats = view.stats[variant.name]
        if stats.requests >= ERROR_MIN_REQUESTS and stats.error_rate >= ERROR_WARNING:
            severity = Severity.CRITICAL if stats.error_rate >= ERROR_CRITICAL else Severity.WARNING
            out.append(
                Finding(
                    f"error_rate-v{variant.version}-{variant.name}",
                    FindingKind.ERROR_RATE,
                    severity,
                    f"{variant.name} fails {stats.error_rate:.1%} of {stats.requests:,} requests",
                    variant.version,
                    variant.name,
                    None,
                    {
                        "error_rate": stats.error_rate,
                        "errors": stats.errors,
                        "requests": stats.requests,
                    },
                    _links(evidence, "/deployment"),
                )
            )
    out += _latency(evidence, live)
    return out


def _latency(evidence: Evidence, live: list[Any]) -> list[Finding]:
    view = evidence.deployment
    assert view is not None
    medians = {
        v.name: (v, view.stats[v.name].percentile_ms(0.5))
        for v in live
        if view.stats[v.name].requests >= LATENCY_MIN_REQUESTS
    }
    fastest = min((p50 for _, p50 in medians.values() if p50), default=None)
    out = []
    for name, (variant, p50) in sorted(medians.items()):
        if fastest and p50 and p50 >= LATENCY_FACTOR * fastest:
            out.append(
                Finding(
                    f"latency-v{variant.version}-{name}",
                    FindingKind.LATENCY,
                    Severity.WARNING,
                    f"{name} answers in {p50:.1f} ms (p50), {p50 / fastest:.1f}x the fastest",
                    variant.version,
                    name,
                    None,
                    {"p50_ms": p50, "fastest_p50_ms": fastest},
                    _links(evidence, "/deployment"),
                )
            )
    return out


def _stale(evidence: Evidence) -> list[Finding]:
    out = []
    for version in evidence.versions:
        service = version.lineage.feature_service
        if not service or not _live(evidence, version.version):
            continue
        stale = [
            v
            for v in evidence.services.get(service, ())
            if v.freshness in (Freshness.STALE, Freshness.NEVER_MATERIALIZED)
        ]
        if not stale:
            continue
        since = _stale_since(stale)
        hours = "" if since is None else f" for {(evidence.until - since) / 3600:.1f} h"
        out.append(
            Finding(
                f"stale_features-v{version.version}-{service}",
                FindingKind.STALE_FEATURES,
                Severity.WARNING,
                f"features of {service} (v{version.version}'s feature service) stale{hours}",
                version.version,
                service,
                since,
                {
                    "views": {
                        v.name: {
                            "freshness": v.freshness.value if v.freshness else None,
                            "last_materialized": v.last_materialized.isoformat()
                            if v.last_materialized
                            else None,
                        }
                        for v in stale
                    }
                },
                (f"{evidence.api_base}/features",),
            )
        )
    return out


def _stale_since(views: list[ViewFreshness]) -> float | None:
    """When the first of the views went stale (materialized end + TTL); None: never."""
    moments = [
        (v.last_materialized + v.ttl).timestamp()
        for v in views
        if v.last_materialized is not None and v.ttl is not None
    ]
    return min(moments) if moments else None


def _correlations(evidence: Evidence, found: list[Finding]) -> list[Finding]:
    deploys = [e for e in evidence.events if e.type is EventType.DEPLOYED and e.version is not None]
    stale = {f.version: f for f in found if f.kind is FindingKind.STALE_FEATURES}
    out = []
    for finding in found:
        if finding.kind not in (FindingKind.FEATURE_DRIFT, FindingKind.PREDICTION_DRIFT):
            continue
        if finding.started_at is None:
            continue
        before = [e for e in deploys if 0 <= finding.started_at - e.at.timestamp() <= CORRELATION_S]
        if before:
            deploy = max(before, key=lambda e: e.at)
            minutes = (finding.started_at - deploy.at.timestamp()) / 60
            out.append(
                Finding(
                    f"drift_after_deploy-{finding.id}",
                    FindingKind.DRIFT_AFTER_DEPLOY,
                    Severity.INFO,
                    f"{finding.title}, {minutes:.0f} minutes after the deploy of v{deploy.version}",
                    finding.version,
                    finding.subject,
                    finding.started_at,
                    {"minutes_after_deploy": minutes, "deployed_version": deploy.version},
                    _links(evidence, "/audit"),
                    (finding.id,),
                )
            )
        gap = stale.get(finding.version)
        if gap is not None and (gap.started_at is None or gap.started_at <= finding.started_at):
            out.append(
                Finding(
                    f"drift_after_stale_features-{finding.id}",
                    FindingKind.DRIFT_AFTER_STALE_FEATURES,
                    Severity.INFO,
                    f"{finding.title} while its features were stale",
                    finding.version,
                    finding.subject,
                    finding.started_at,
                    {},
                    gap.links,
                    (finding.id, gap.id),
                )
            )
    return out


def _live(evidence: Evidence, version: int) -> bool:
    """Whether the version takes live traffic now."""
    view = evidence.deployment
    return view is not None and any(v.version == version for v in view.table.serving())
