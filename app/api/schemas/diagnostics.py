"""Wire models of `POST /models/{id}/diagnose`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.findings import Finding, FindingKind, Severity
from app.services.diagnostics import Diagnosis, Explanation

MAX_WINDOW_S = 90 * 86_400


class DiagnoseRequest(BaseModel):
    """What to diagnose: a model (or one version), over a window, with a question."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {"window_s": 86400, "question": "What is wrong with churn, and since when?"}
        },
    )

    version: int | None = Field(default=None, ge=1, description="Only this version's findings.")
    window_s: float | None = Field(
        default=None,
        gt=0,
        le=MAX_WINDOW_S,
        description="How far back events count (seconds; default diagnostics.default_window_s).",
    )
    question: str | None = Field(
        default=None, max_length=2000, description="For the assistant to answer."
    )


class FindingOut(BaseModel):
    """One finding: what, how bad, since when, the numbers, where the evidence is."""

    id: str = Field(description="Stable: the same finding has the same id in later calls.")
    kind: FindingKind
    severity: Severity
    title: str
    version: int | None
    subject: str | None = Field(description="The feature, variant or feature service.")
    started_at: datetime | None
    numbers: dict[str, Any]
    links: list[str] = Field(description="The endpoints that show the evidence.")
    related: list[str] = Field(description="Findings this one correlates.")

    @classmethod
    def of(cls, finding: Finding) -> FindingOut:
        """Wire form."""
        started = finding.started_at
        return cls(
            id=finding.id,
            kind=finding.kind,
            severity=finding.severity,
            title=finding.title,
            version=finding.version,
            subject=finding.subject,
            started_at=datetime.fromtimestamp(started, UTC) if started else None,
            numbers=dict(finding.numbers),
            links=list(finding.links),
            related=list(finding.related),
        )


class AssistantOut(BaseModel):
    """Which LLM version wrote the explanation."""

    model: str
    version: int


class ExplanationOut(BaseModel):
    """The assistant's narrative, apart from the findings, and what it cites."""

    text: str
    cited: list[str] = Field(description="Ids of findings in this response.")
    assistant: AssistantOut
    prompt_sha256: str = Field(description="Digest of the prompt (built from the findings).")

    @classmethod
    def of(cls, explanation: Explanation) -> ExplanationOut:
        """Wire form."""
        return cls(
            text=explanation.text,
            cited=list(explanation.cited),
            assistant=AssistantOut(model=explanation.model, version=explanation.version),
            prompt_sha256=explanation.prompt_sha256,
        )


class DiagnosisPublic(BaseModel):
    """Findings first, most severe first; the explanation, or a note why there is none."""

    model: str
    version: int | None
    window_start: datetime
    window_end: datetime
    findings: list[FindingOut]
    explanation: ExplanationOut | None
    note: str | None

    @classmethod
    def of(cls, diagnosis: Diagnosis) -> DiagnosisPublic:
        """Wire form."""
        return cls(
            model=diagnosis.model,
            version=diagnosis.version,
            window_start=datetime.fromtimestamp(diagnosis.since, UTC),
            window_end=datetime.fromtimestamp(diagnosis.until, UTC),
            findings=[FindingOut.of(f) for f in diagnosis.findings],
            explanation=ExplanationOut.of(diagnosis.explanation) if diagnosis.explanation else None,
            note=diagnosis.note,
        )
