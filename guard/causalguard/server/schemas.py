"""Request and response bodies of the OpenAI chat-completions API (the subset the guard serves).

causalguard extensions in the request body (the ``openai`` client sends them with ``extra_body``):
``profile`` selects a named guard profile (also ``"model": "<name>:<profile>"``); ``interventions``
adds SAE feature edits, accepted only when the operator sets ``allow_client_interventions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from causalguard.adapters.hf.interventions import FeatureEdit, SaeIntervention

if TYPE_CHECKING:
    from causalguard.runtime.value_guard import ValueGuard

MAX_SEED = 2**63 - 1


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    role: Literal["system", "user", "assistant", "developer"]
    content: str = Field(max_length=32_000)


class ClientIntervention(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    feature: int = Field(ge=0)
    mode: Literal["add", "clamp", "multiply"] = "add"
    value: float = Field(ge=-1e4, le=1e4)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    include_usage: bool = False


# OpenAI request fields this server does not honour: accepted only at the value that means "off"
# (what the client gets then is what it asked for); any other value is a 400 naming the field.
UNSUPPORTED_UNLESS_OFF: dict[str, tuple[Any, ...]] = {
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "logit_bias": (None, {}),
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "functions": (None, []),
    "function_call": (None, "none"),
    "parallel_tool_calls": (None, False, True),
    "response_format": (None, {"type": "text"}),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "prediction": (None,),
    "reasoning_effort": (None,),
    "web_search_options": (None,),
}
# Fields that do not change the reply: accepted (when of their OpenAI type) and recorded nowhere.
IGNORED_FIELDS: dict[str, type | tuple[type, ...]] = {"user": str, "metadata": dict, "store": bool, "service_tier": str}


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)  # true is not 1, "yes" is not true (as OpenAI answers)
    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = Field(default=None, description="Up to 4 strings; the reply ends before the first.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1, description="Only n=1 is served.")
    profile: str | None = Field(default=None, min_length=1, max_length=100)
    interventions: list[ClientIntervention] = Field(default_factory=list, max_length=16)

    def token_limit(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else (value or [])
        if len(stops) > 4 or any(not 1 <= len(s) <= 64 for s in stops):
            raise ValueError("stop: at most 4 strings of 1 to 64 characters")
        return value

    @property
    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    def unsupported(self) -> tuple[str, str] | None:
        """The first field this server would not honour: (field, why); None when every field is served."""
        for name, value in (self.model_extra or {}).items():
            if name in IGNORED_FIELDS:
                expected = IGNORED_FIELDS[name]
                if value is not None and not isinstance(value, expected):
                    return name, f"'{name}' must be a {getattr(expected, '__name__', expected)} (or left out)"
                continue
            if name not in UNSUPPORTED_UNLESS_OFF:
                return name, f"unknown field '{name}'"
            if value not in UNSUPPORTED_UNLESS_OFF[name]:
                return name, f"'{name}' is not supported by this server (leave it out or at its default)"
        return None


def error_body(
    message: str, *, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The OpenAI error schema."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class RequestRejected(Exception):
    """A request the guard cannot serve as asked: the HTTP status and the OpenAI error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status, self.param, self.code, self.type_ = status, param, code, type_


@dataclass(frozen=True)
class GuardCall:
    """An OpenAI request translated into what ``ValueGuard.generate`` / ``stream`` take."""

    profile: str
    messages: list[dict[str, str]]
    max_new_tokens: int
    temperature: float
    seed: int | None
    interventions: tuple[SaeIntervention, ...]
    prompt_tokens: int = 0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()


def translate_request(body: ChatCompletionRequest, guard: ValueGuard) -> GuardCall:
    """Check a request against the guard's current config and translate it; ``RequestRejected`` if it
    cannot be served (unknown profile, too many tokens, interventions the operator does not allow)."""
    config = guard.config
    unsupported = body.unsupported()
    if unsupported is not None:
        raise RequestRejected(400, unsupported[1], param=unsupported[0], code="unsupported_parameter")
    name, _, named_profile = body.model.partition(":")
    if name != config.model:
        raise RequestRejected(
            404,
            f"the model '{body.model}' does not exist here; models: {config.model} and "
            f"{config.model}:<profile> (GET /v1/models)",
            param="model",
            code="model_not_found",
            type_="invalid_request_error",
        )
    if body.profile and named_profile and body.profile != named_profile:
        raise RequestRejected(
            400,
            f"profile '{body.profile}' and model '{body.model}' name different profiles; give one of them",
            param="profile",
            code="conflicting_profile",
        )
    profile = body.profile or named_profile or "default"
    if profile not in guard.state.plans:
        raise RequestRejected(
            400,
            f"unknown profile '{profile}'; profiles: {', '.join(guard.state.plans)}",
            param="profile",
            code="unknown_profile",
        )
    limit = body.token_limit(min(64, config.server.max_tokens_limit))
    if limit > config.server.max_tokens_limit:
        raise RequestRejected(
            400,
            f"max_tokens {limit} is over this server's limit {config.server.max_tokens_limit}",
            param="max_tokens",
            code="max_tokens_too_large",
        )
    extra: tuple[SaeIntervention, ...] = ()
    if body.interventions:
        if not config.allow_client_interventions:
            raise RequestRejected(
                403,
                "this server does not accept client interventions; choose a profile",
                type_="permission_error",
                param="interventions",
            )
        if guard.sae is None:
            raise RequestRejected(400, "this guard has no SAE to intervene with", param="interventions")
        cap = config.limits.max_client_edit
        for k, edit in enumerate(body.interventions):
            if abs(edit.value) > cap:
                raise RequestRejected(
                    400,
                    f"|value| {abs(edit.value):g} is over this server's limit {cap:g}",
                    param=f"interventions[{k}].value",
                )
        try:
            extra = (
                SaeIntervention(guard.sae, tuple(FeatureEdit(i.feature, i.mode, i.value) for i in body.interventions)),
            )
        except ValueError as exc:
            raise RequestRejected(400, str(exc), param="interventions") from None
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.content} for m in body.messages]
    if not any(m["role"] != "system" for m in messages):
        raise RequestRejected(400, "messages need at least one user turn", param="messages")
    tokens = check_prompt_length(guard, messages, profile, limit)
    return GuardCall(profile, messages, limit, body.temperature, body.seed, extra, tokens, body.top_p, body.stops)


def check_prompt_length(guard: ValueGuard, messages: list[dict[str, str]], profile: str, max_new_tokens: int) -> int:
    """The conversation's prompt tokens; refuse, before admission, one longer than the operator's
    ``server.max_prompt_tokens`` or one whose reply would not fit the model's context."""
    config = guard.config
    tokens = len(guard.prompt_ids(messages, guard.state.plans[profile], config))
    if tokens > config.server.max_prompt_tokens:
        raise RequestRejected(
            400,
            f"the conversation is {tokens} tokens, over this server's limit of "
            f"{config.server.max_prompt_tokens} (server.max_prompt_tokens); shorten it",
            param="messages",
            code="context_length_exceeded",
        )
    context = getattr(getattr(guard.lm.model, "config", None), "max_position_embeddings", None)
    if isinstance(context, int) and tokens + max_new_tokens > context:
        raise RequestRejected(
            400,
            f"the conversation ({tokens} tokens) plus max_tokens ({max_new_tokens}) exceeds "
            f"the model's context of {context} tokens",
            param="messages",
            code="context_length_exceeded",
        )
    return tokens
