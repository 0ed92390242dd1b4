"""The serving evidence one promotion weighs, asked for before the promotion and handed to
the registry with it.

The registry does not call the serving layer: whoever asks for a promotion (the API's
promotion use case, the canary controller) first asks serving the questions
`evidence_request` lists for the model as it stands, and passes the answers
(`ServingFacts`). The registry computes the same questions again under its lock; when
they differ (another promotion moved the production version in between) the answers are
stale and the promotion is refused as a concurrent change, never decided on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from app.core.gates import Evidence
from app.core.lifecycle import ModelStage
from app.errors import Conflict, ErrorCode


@dataclass(frozen=True)
class EvidenceRequest:
    """The questions for serving: integration checks and drain states of versions, and A/B
    verdicts of (candidate, baseline) pairs (baseline None: no production version)."""

    integration: tuple[int, ...] = ()
    ab_tests: tuple[tuple[int, int | None], ...] = ()
    traffic: tuple[int, ...] = ()

    @property
    def empty(self) -> bool:
        """Whether serving need not be asked at all."""
        return not (self.integration or self.ab_tests or self.traffic)


@dataclass(frozen=True)
class ServingFacts:
    """Serving's answers to an `EvidenceRequest` (None: no evidence for that question)."""

    request: EvidenceRequest = field(default_factory=EvidenceRequest)
    integration: Mapping[int, Evidence | None] = field(default_factory=dict)
    ab_tests: Mapping[tuple[int, int | None], Evidence | None] = field(default_factory=dict)
    traffic: Mapping[int, Evidence | None] = field(default_factory=dict)

    def answers(self, request: EvidenceRequest) -> bool:
        """Whether these are the answers to `request` (else they are stale)."""
        return self.request == request


def evidence_request(
    stages: Iterable[tuple[int, ModelStage]], candidate: int, target: ModelStage
) -> EvidenceRequest:
    """What serving must say for `candidate` to move to `target`, given every version's
    stage: for production, the candidate's integration check, its A/B verdict against
    the newest production version, and whether the production versions it supersedes are
    drained; for archived, whether the candidate is drained."""
    production = sorted(v for v, s in stages if s is ModelStage.PRODUCTION and v != candidate)
    if target is ModelStage.PRODUCTION:
        baseline = production[-1] if production else None
        return EvidenceRequest(
            integration=(candidate,),
            ab_tests=((candidate, baseline),),
            traffic=tuple(production),
        )
    if target is ModelStage.ARCHIVED:
        return EvidenceRequest(traffic=(candidate,))
    return EvidenceRequest()


def checked_facts(
    model: str,
    stages: Iterable[tuple[int, ModelStage]],
    candidate: int,
    target: ModelStage,
    serving: ServingFacts | None,
) -> ServingFacts:
    """The facts a promotion decides on: `serving` when it answers what the model asks
    now, no evidence at all when there is no serving layer (None).

    Raises:
        Conflict: `illegal_transition`: the answers are stale (the production version
            changed while they were gathered); the caller retries.
    """
    request = evidence_request(stages, candidate, target)
    if serving is None:
        return ServingFacts(request)
    if not serving.answers(request):
        raise Conflict(
            ErrorCode.ILLEGAL_TRANSITION,
            f"The production version of {model!r} changed while this promotion gathered "
            "its serving evidence; retry.",
            model=model,
            version=candidate,
        )
    return serving
