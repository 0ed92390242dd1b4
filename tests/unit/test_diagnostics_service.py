"""The assistant's side of a diagnosis with a scripted gateway; the real engine (vLLM) is
tested in tests/integration/test_backends.py."""

import asyncio
import hashlib
import json
import re
from typing import Any, cast

from app.core.findings import Finding, FindingKind, Severity
from app.errors import ErrorCode, NotFound
from app.services.diagnostics import Assistant
from app.services.llm import LlmAnswer, LlmGateway

FINDINGS = [
    Finding("error_rate-v2-v2", FindingKind.ERROR_RATE, Severity.CRITICAL, "v2 fails", 2, "v2",
            None, {"error_rate": 0.5}),
    Finding("feature_drift-v2-tenure_months", FindingKind.FEATURE_DRIFT, Severity.WARNING,
            "tenure drifted", 2, "tenure_months", 1.0e9, {"psi": 4.7123456}),
]  # fmt: skip


class ScriptedGateway:
    def __init__(self, content: str | None = None, error: Exception | None = None) -> None:
        self.content, self.error = content, error
        self.bodies: list[dict[str, Any]] = []

    async def call(self, kind: str, body: dict[str, Any], key: Any, request_id: str) -> LlmAnswer:
        self.bodies.append(body)
        if self.error:
            raise self.error
        response = {"choices": [{"message": {"content": self.content}}]}
        return LlmAnswer(body["model"], 3, "v3", response, None)


def explain(gateway: ScriptedGateway, question: str | None = None) -> Any:
    assistant = Assistant(cast(LlmGateway, gateway), "diagnostics-assistant")
    return asyncio.run(assistant.explain("churn", FINDINGS, question))


def test_the_prompt_holds_only_the_findings_and_the_answer_must_cite_their_ids() -> None:
    answer = '{"cited":["error_rate-v2-v2"],"summary":"v2 fails half of its requests"}'
    gateway = ScriptedGateway(answer)
    explanation = explain(gateway, "what is wrong?")
    body = gateway.bodies[0]
    prompt = body["messages"][1]["content"]
    assert "id error_rate-v2-v2 [critical]" in prompt and "4.7123" in prompt
    assert "Question: what is wrong?" in prompt
    assert explanation.cited == ("error_rate-v2-v2",)
    assert explanation.version == 3 and explanation.model == "diagnostics-assistant"
    assert explanation.prompt_sha256 == hashlib.sha256(prompt.encode()).hexdigest()
    pattern = body["structured_outputs"]["regex"]
    assert re.fullmatch(pattern, answer)
    invented = '{"cited":["made-up"],"summary":"something else entirely"}'
    assert not re.fullmatch(pattern, invented)
    assert body["temperature"] == 0


def test_unknown_ids_are_dropped_and_a_cut_answer_keeps_what_it_named() -> None:
    wrong = json.dumps({"summary": "text", "cited": ["made-up", "error_rate-v2-v2"]})
    assert explain(ScriptedGateway(wrong)).cited == ("error_rate-v2-v2",)
    cut = '{"cited":["feature_drift-v2-tenure_months"],"summary":"v2 fails half of its req'
    partial = explain(ScriptedGateway(cut))
    assert partial.cited == ("feature_drift-v2-tenure_months",)
    assert partial.text == "v2 fails half of its req"


def test_an_assistant_that_is_not_deployed_raises_for_the_service_to_note() -> None:
    gone = NotFound(ErrorCode.NOT_DEPLOYED, "Model 'diagnostics-assistant' is not deployed.")
    try:
        explain(ScriptedGateway(error=gone))
    except NotFound as exc:
        assert exc.code is ErrorCode.NOT_DEPLOYED
    else:
        raise AssertionError("expected NotFound")
