"""Request and response bodies of the OpenAI chat-completions API (the subset the guard serves).

causalguard extensions in the request body (the ``openai`` client sends them with ``extra_body``):
``profile`` selects a named guard profile (also ``"model": "<name>:<profile>"``); ``interventions``
adds SAE feature edits, accepted only when the operator sets ``allow_client_interventions``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer"]
    content: str = Field(max_length=32_000)


class ClientIntervention(BaseModel):
    model_config = ConfigDict(extra="forbid")
    feature: int = Field(ge=0)
    mode: Literal["add", "clamp", "multiply"] = "add"
    value: float = Field(ge=-1e4, le=1e4)


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    seed: int | None = None
    stream: bool = False
    n: int = Field(default=1, ge=1, le=1, description="Only n=1 is served.")
    profile: str | None = Field(default=None, max_length=100)
    interventions: list[ClientIntervention] = Field(default_factory=list, max_length=16)

    def token_limit(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default


def error_body(message: str, *, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """The OpenAI error schema."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
