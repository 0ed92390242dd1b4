"""Wire models of the OpenAI-compatible LLM routes (the fields the service reads; every
other OpenAI field is passed to vLLM as sent)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.jobs.spec import ModelName


class ChatMessage(BaseModel):
    """One message of a conversation."""

    model_config = ConfigDict(extra="allow")

    role: str = Field(min_length=1, max_length=64)
    content: str | list[dict[str, Any]] | None = None


class _OpenAiRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: ModelName = Field(description="The registered model (deployed on the vllm backend).")
    stream: bool = Field(default=False, description="Server-sent events, as OpenAI streams.")
    max_tokens: int | None = Field(default=None, ge=1, le=32_768)
    temperature: float | None = Field(default=None, ge=0, le=2)
    user: str | None = Field(
        default=None,
        max_length=256,
        description="Also the sticky routing key (same user, same variant) unless "
        "X-Request-Key is sent.",
    )


class ChatCompletionRequest(_OpenAiRequest):
    """OpenAI's chat completion request."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "model": "assistant",
                    "messages": [{"role": "user", "content": "Why do customers churn?"}],
                    "max_tokens": 32,
                }
            ]
        },
    )

    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)


class CompletionRequest(_OpenAiRequest):
    """OpenAI's (legacy) completion request."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [{"model": "assistant", "prompt": "Churn is", "max_tokens": 16}]
        },
    )

    prompt: str | list[str] = Field(min_length=1)
