"""Model diagnostics: the findings (`app.core.diagnosis`) from the evidence the service
holds, then, when an assistant LLM is deployed, its explanation of them.

The assistant sees only the findings (kinds, titles, numbers, times: no raw rows, no
secrets) and the question. Its answer is constrained to JSON that names finding ids
(vLLM's structured outputs, a regular expression over the ids it was given), so every
explanation cites findings that exist in the same response; it is kept apart from the
findings with the assistant's version and a digest of the prompt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.core.diagnosis import diagnose
from app.core.findings import Evidence, Finding, ViewFreshness
from app.errors import DomainError, ErrorCode, NotFound
from app.ports.monitoring import MonitorControl
from app.ports.registry import ModelRegistry
from app.ports.serving import ServingControl
from app.services.features import Features
from app.services.llm import LlmGateway

log = logging.getLogger(__name__)

MAX_CITED = 5
_SYSTEM = (
    "You are the ML platform's diagnostics assistant. You are given findings about a "
    "deployed model, each with an id. Explain in plain language what is wrong and since "
    "when, answer the user's question if there is one, and cite the ids of the findings "
    "you rely on. Use only the findings."
)


@dataclass(frozen=True)
class Explanation:
    """The assistant's narrative, the finding ids it cites, who wrote it, from what."""

    text: str
    cited: tuple[str, ...]
    model: str
    version: int
    prompt_sha256: str


@dataclass(frozen=True)
class Diagnosis:
    """Findings first; the explanation (or why there is none) apart."""

    model: str
    version: int | None
    since: float
    until: float
    findings: list[Finding]
    explanation: Explanation | None
    note: str | None


class Assistant:
    """The diagnostics assistant: an LLM version deployed with the `vllm` backend.

    Args:
        llm: the LLM gateway (routes to the assistant model's deployment).
        model: the registered model that is the assistant.
        max_tokens: the longest explanation.
    """

    def __init__(self, llm: LlmGateway, model: str, max_tokens: int = 256) -> None:
        self._llm = llm
        self.model = model
        self._max_tokens = max_tokens

    def request(
        self, diagnosed: str, findings: Sequence[Finding], question: str | None
    ) -> tuple[dict[str, Any], str]:
        """The chat request that explains `findings` (about `diagnosed`), and its prompt."""
        prompt = _prompt(diagnosed, findings, question)
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": _SYSTEM},
                {"role": "user", "content": prompt},
            ],
            "max_tokens": self._max_tokens,
            "temperature": 0,
            "repetition_penalty": 1.2,  # small models loop on digits otherwise
            "structured_outputs": {"regex": _answer_pattern([f.id for f in findings])},
        }
        return body, prompt

    async def explain(
        self, diagnosed: str, findings: Sequence[Finding], question: str | None
    ) -> Explanation:
        """The explanation of `findings` (about `diagnosed`), citing their ids.

        Raises:
            NotFound: the assistant is not deployed. Unavailable: its engine is down.
            UpstreamFailed, InvalidInput: its engine failed or refused the request.
        """
        body, prompt = self.request(diagnosed, findings, question)
        answer = await self._llm.call("chat", body, None, f"diagnose-{uuid.uuid4().hex[:12]}")
        content = _content(answer.response or {})
        known = {f.id for f in findings}
        parsed = _parse(content, sorted(known))
        cited = tuple(dict.fromkeys(i for i in parsed.get("cited", []) if i in known))
        return Explanation(
            text=str(parsed.get("summary", content)),
            cited=cited,
            model=self.model,
            version=answer.version,
            prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest(),
        )


class Diagnostics:
    """Diagnoses models for the API.

    Args:
        registry: versions, lineage and the audit log.
        traffic: the deployment, its stats and verdicts (None: no serving here).
        monitor: drift evaluations and alerts (None: monitoring off).
        features: the feature catalog with freshness (None: no feature store).
        assistant: explains the findings (None: findings only).
        api_base: where the findings' evidence links point.
        default_window_s: the window of a diagnosis that names none.
        clock: epoch seconds.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        traffic: ServingControl | None,
        monitor: MonitorControl | None,
        features: Features | None,
        assistant: Assistant | None,
        api_base: str = "/api/v1/ml",
        default_window_s: float = 86_400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._registry = registry
        self._traffic = traffic
        self._monitor = monitor
        self._features = features
        self._assistant = assistant
        self._api_base = api_base
        self._default_window_s = default_window_s
        self._clock = clock

    async def diagnose(
        self, model: str, version: int | None, window_s: float | None, question: str | None
    ) -> Diagnosis:
        """Findings about `model` (or one version) over the last `window_s` seconds, and
        the assistant's explanation when one is deployed.

        Raises:
            NotFound: no such model or version.
        """
        evidence = await self._evidence(model, version, window_s or self._default_window_s)
        findings = diagnose(evidence, version)
        explanation, note = await self._explain(model, version, findings, question)
        return Diagnosis(
            model, version, evidence.since, evidence.until, findings, explanation, note
        )

    async def _evidence(self, model: str, version: int | None, window_s: float) -> Evidence:
        view = await self._registry.get_model(model)
        if version is not None and all(v.version != version for v in view.versions):
            raise NotFound(
                ErrorCode.MODEL_VERSION_NOT_FOUND,
                f"Model {model!r} has no version {version}.",
                model=model,
                version=version,
            )
        until = self._clock()
        deployment = None
        if self._traffic is not None:
            try:
                deployment = await self._traffic.view(model)
            except NotFound:
                deployment = None
        drift: dict[int, dict[str, Any]] = {}
        alerts: list[Any] = []
        if self._monitor is not None:
            drift = await self._monitor.drift(model)
            alerts = await self._monitor.alerts(model, None, 0, 200)
        return Evidence(
            model=model,
            since=until - window_s,
            until=until,
            versions=view.versions,
            events=await self._registry.audit(model),
            deployment=deployment,
            drift=drift,
            alerts=tuple(alerts),
            services=self._services({v.lineage.feature_service for v in view.versions}),
            api_base=self._api_base,
        )

    def _services(self, names: set[str | None]) -> dict[str, tuple[ViewFreshness, ...]]:
        wanted = {n for n in names if n}
        if self._features is None or not wanted:
            return {}
        catalog = self._features.catalog(fresh=True)
        out = {}
        for name in wanted:
            service = catalog.service(name)
            if service is None:
                continue
            views = {ref.partition(":")[0] for ref in service.features}
            out[name] = tuple(
                ViewFreshness(v.name, v.freshness, v.last_materialized, v.ttl)
                for v in catalog.feature_views
                if v.name in views and not v.on_demand
            )
        return out

    async def _explain(
        self, model: str, version: int | None, findings: list[Finding], question: str | None
    ) -> tuple[Explanation | None, str | None]:
        if self._assistant is None:
            return None, "no diagnostics assistant is configured (diagnostics.assistant_model)"
        if not findings:
            return None, "no findings: nothing for the assistant to explain"
        diagnosed = model if version is None else f"{model} version {version}"
        try:
            return await self._assistant.explain(diagnosed, findings, question), None
        except NotFound:
            return None, f"the assistant {self._assistant.model!r} is not deployed"
        except DomainError as exc:
            log.warning("the diagnostics assistant failed: %s", exc.message)
            return None, f"the assistant {self._assistant.model!r} is unavailable: {exc.message}"


def _prompt(diagnosed: str, findings: Sequence[Finding], question: str | None) -> str:
    lines = [f"Findings about {diagnosed}:"]
    for finding in findings:
        started = (
            datetime.fromtimestamp(finding.started_at, UTC).isoformat(timespec="minutes")
            if finding.started_at
            else "unknown"
        )
        numbers = json.dumps(_rounded(dict(finding.numbers)), sort_keys=True, default=str)
        lines.append(
            f"- id {finding.id} [{finding.severity.value}] {finding.title}; since {started}; "
            f"numbers {numbers}"
        )
    lines.append(
        f"Question: {question}" if question else "Question: what is wrong, and since when?"
    )
    lines.append("Cite the ids you use, then answer in one or two plain sentences.")
    return "\n".join(lines)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _answer_pattern(ids: Sequence[str]) -> str:
    """JSON citing one to five of `ids` first (an answer cut short by `max_tokens` still
    cites), then a plain-text summary."""
    one = "(" + "|".join(re.escape(json.dumps(i)) for i in ids) + ")"
    text = r"[A-Za-z0-9 ,.;:()%'+/=_\-]{20,600}"
    cited = one + "(," + one + "){0," + str(MAX_CITED - 1) + "}"
    return r'\{"cited":\[' + cited + r'\],"summary":"' + text + r'"\}'


def _content(response: dict[str, Any]) -> str:
    choices = response.get("choices") or [{}]
    message = choices[0].get("message") or {}
    return str(message.get("content") or choices[0].get("text") or "")


def _parse(content: str, ids: Sequence[str]) -> dict[str, Any]:
    """The answer's cited ids and summary; an answer cut short by `max_tokens` keeps the
    ids it named and its text so far."""
    try:
        parsed = json.loads(content)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    head, _, summary = content.partition('"summary":"')
    named = [i for i in ids if f'"{i}"' in head]
    return {"summary": summary.removesuffix('"}') if summary else content, "cited": named}
