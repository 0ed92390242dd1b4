"""OpenAI-compatible LLM routes: `/llm/v1/chat/completions` and `/llm/v1/completions`.

An OpenAI client works with `base_url=<service>/api/v1/ml/llm/v1` and the service token
as its API key. The answer's `X-Model-Version` and `X-Variant` headers say which version
of the deployment answered.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from app.api.deps import LlmDep
from app.api.problems import problem_responses, request_id_of
from app.api.schemas.llm import ChatCompletionRequest, CompletionRequest
from app.api.security import GuardedRoute, requires
from app.core.access import Role
from app.services.llm import LlmAnswer, LlmGateway

router = APIRouter(tags=["llm"], route_class=GuardedRoute)

RequestKey = Annotated[
    str | None,
    Header(alias="X-Request-Key", max_length=256, description="Sticky routing key."),
]
_OPENAI_RESPONSES = {
    200: {
        "description": "The OpenAI response, or with `stream: true` server-sent events "
        "(`text/event-stream`, ending with `data: [DONE]`).",
        "content": {"text/event-stream": {}},
    },
    **problem_responses(404, 422, 502, 503),
}


@router.post(
    "/llm/v1/chat/completions",
    responses=_OPENAI_RESPONSES,
    openapi_extra=requires(Role.VIEWER),
)
async def chat_completions(
    body: ChatCompletionRequest, llm: LlmDep, request: Request, key: RequestKey = None
) -> Response:
    """OpenAI chat completion from the deployed LLM version the routing picks."""
    return await _answer(llm, "chat", body.model_dump(exclude_none=True), key, request)


@router.post(
    "/llm/v1/completions",
    responses=_OPENAI_RESPONSES,
    openapi_extra=requires(Role.VIEWER),
)
async def completions(
    body: CompletionRequest, llm: LlmDep, request: Request, key: RequestKey = None
) -> Response:
    """OpenAI completion from the deployed LLM version the routing picks."""
    return await _answer(llm, "completions", body.model_dump(exclude_none=True), key, request)


async def _answer(
    llm: LlmGateway, kind: str, body: dict[str, object], key: str | None, request: Request
) -> Response:
    answer: LlmAnswer = await llm.call(kind, body, key, request_id_of(request))
    headers = {"X-Model-Version": str(answer.version), "X-Variant": answer.variant}
    if answer.stream is not None:
        return StreamingResponse(answer.stream, media_type="text/event-stream", headers=headers)
    return JSONResponse(answer.response, headers=headers)
