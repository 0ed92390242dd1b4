"""Serving evidence before the serving layer exists: there is none, and gates say so."""

from __future__ import annotations

from app.core.gates import Evidence


class NoServingEvidence:
    """`ServingEvidence` while no model is deployed: no integration checks, no A/B
    verdicts, no traffic. Gates that need evidence report "no evidence" and block."""

    def integration(self, model: str, version: int) -> Evidence | None:
        """See `ServingEvidence.integration`."""
        del model, version
        return None

    def ab_verdict(self, model: str, candidate: int, baseline: int | None) -> Evidence | None:
        """See `ServingEvidence.ab_verdict`."""
        del model, candidate, baseline
        return None

    def traffic_share(self, model: str, version: int) -> float | None:
        """See `ServingEvidence.traffic_share`."""
        del model, version
        return None
