"""``ChatValueGuard``: value targets for any LangChain chat model.

- Around ``ChatHuggingFaceLocal`` it runs a full ``ValueGuard`` (role and SAE levers, audits,
  metrics) on the local model.
- Around any other chat model (remote APIs included) it applies role levers by composing the system
  message. A profile that needs SAE levers is planned with role levers instead when the config says
  ``fallback_to_roles: true``; otherwise construction fails with a clear error.

    guard = ChatValueGuard(inner=ChatHuggingFaceLocal(lm=lm), config="guard.yaml")
    chain = prompt | guard | StrOutputParser()
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

from causalguard.adapters.langchain.local_hf import ChatHuggingFaceLocal
from causalguard.adapters.langchain.messages import to_dicts, to_messages
from causalguard.bundle.format import Bundle, load_bundle, resolve_bundle_dir
from causalguard.config.loading import SourcedConfig, read_guard_config
from causalguard.config.schema import GuardConfig
from causalguard.metrics import GuardMetrics, RequestOutcome
from causalguard.planning.planner import Plan
from causalguard.runtime.conversation import compose_messages
from causalguard.runtime.state import build_guard_state


def _next_or_none(chunks: Iterator[ChatGenerationChunk]) -> ChatGenerationChunk | None:
    return next(chunks, None)


class ChatValueGuard(BaseChatModel):
    """Any LangChain chat model, steered toward the operator's value targets.

    A local model (``ChatHuggingFaceLocal``) is guarded by a ``ValueGuard`` with every lever kind its plan
    needs; any other chat model gets the plan's role levers as system-prompt text. A call picks another
    profile of the config with ``invoke(..., profile=...)`` or ``bind(profile=...)``.

    Attributes:
        inner: The chat model to guard.
        config: A ``guard.yaml`` path, or a config already read.
        bundle: The bundle to plan from; default: the config's ``bundle``.
        guard_profile: The profile applied when a call names none.
        metrics: Where Prometheus metrics go; default: a private registry.
        start_audits: Start the configured audits (local models only).

    Raises:
        ConfigError: As for ``ValueGuard``, or a profile the inner model cannot run.
        TypeError: ``config`` is not a config or a path.

    Example:
        >>> chat = ChatValueGuard(inner=ChatHuggingFaceLocal(lm=load_model("smollm2-135m-instruct")),
        ...                       config="deploy/guard.yaml")  # doctest: +SKIP
        >>> chat.invoke("Any weekend ideas?").content  # doctest: +SKIP
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseChatModel = Field(description="The chat model to guard.")
    config: Any = Field(description="GuardConfig, or a path to guard.yaml.")
    bundle: Any = Field(default=None, description="Bundle or bundle folder; default: the config's bundle.")
    guard_profile: str = Field(
        default="default",
        description="Which profile of the config this model applies "
        "(a call may pick another: bind(profile=...) or invoke(..., profile=...)).",
    )
    metrics: Any = Field(default=None, description="GuardMetrics to record into; default: a fresh registry.")
    start_audits: bool = True
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    timeout: float | None = None
    max_retries: int | None = None
    streaming: bool = False

    _guard: Any = PrivateAttr(default=None)
    _plan: Plan | None = PrivateAttr(default=None)
    _plans: dict[str, Plan] = PrivateAttr(default_factory=dict)  # remote models: per-call profiles, planned once
    _state_inputs: tuple[Any, Any] | None = PrivateAttr(default=None)  # remote models: (config, bundle) to plan with
    _profile_names: tuple[str, ...] = PrivateAttr(default=())
    _system_prompt: str | None = PrivateAttr(default=None)  # the operator's, first in every composed system message
    _metrics: GuardMetrics | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any) -> None:
        if not isinstance(self.config, GuardConfig | SourcedConfig | str | Path):
            raise TypeError("config must be a GuardConfig, a SourcedConfig or a path to guard.yaml")
        sourced = read_guard_config(self.config)
        config, path = sourced.config, sourced.path
        self._system_prompt = config.system_prompt
        self._profile_names = tuple(config.profile_names)
        if isinstance(self.inner, ChatHuggingFaceLocal):
            from causalguard.runtime.value_guard import ValueGuard

            lm = self.inner.lm
            self._guard = ValueGuard(
                lm.model,
                lm.tokenizer,
                sourced,
                bundle=self.bundle,
                metrics=self.metrics,
                start_audits=self.start_audits,
                name=lm.name,
            )
            self._metrics = self._guard.metrics
            self._plan = self._guard.plan(self.guard_profile)
            return
        bundle = (
            self.bundle
            if isinstance(self.bundle, Bundle)
            else load_bundle(
                resolve_bundle_dir(
                    self.bundle if self.bundle is not None else config.bundle,
                    config.model,
                    path.parent if path is not None else None,
                )
            )
        )
        self._metrics = self.metrics if self.metrics is not None else GuardMetrics()
        self._state_inputs = (sourced, bundle)
        self._plan = self._remote_plan(self.guard_profile)

    def _remote_plan(self, profile: str) -> Plan:
        """A remote model's plan for ``profile`` (role levers only), planned on first use."""
        if profile not in self._plans:
            assert self._state_inputs is not None and self._metrics is not None
            sourced, bundle = self._state_inputs
            state = build_guard_state(sourced, bundle, sae=None, local_model=False, profiles=[profile])
            self._plans[profile] = state.plan(profile)
            self._metrics.publish_plan(self._plans[profile])
        return self._plans[profile]

    def _profile(self, kwargs: dict[str, Any]) -> str:
        """The call's profile: ``bind(profile=...)`` / ``invoke(..., profile=...)`` (or ``guard_profile``), else
        the model's; an unknown name is an error, never a silent default."""
        given = [kwargs.pop(k) for k in ("profile", "guard_profile") if k in kwargs]
        profile = str(given[-1]) if given else self.guard_profile
        if profile not in self._profile_names:
            raise ValueError(
                f"profile: no profile '{profile}' in the guard's config (profiles: {', '.join(self._profile_names)})"
            )
        return profile

    def _plan_for(self, profile: str) -> Plan:
        return self._guard.plan(profile) if self._guard is not None else self._remote_plan(profile)

    def _local_options(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        """What the in-process guard takes from a call; anything else it cannot honour is an error."""
        options = {
            "max_new_tokens": int(kwargs.pop("max_tokens", self.max_tokens or 64)),
            "temperature": float(kwargs.pop("temperature", self.temperature or 0.0)),
            "stop": tuple(stop or self.stop or ()),
        }
        if "seed" in kwargs:
            options["seed"] = kwargs.pop("seed")
        unknown = sorted(k for k in kwargs if not k.startswith("ls_"))
        if unknown:
            raise ValueError(
                f"the in-process guard does not support {', '.join(unknown)} (it takes max_tokens, "
                "temperature, stop, seed and profile)"
            )
        return options

    @property
    def plan(self) -> Plan:
        assert self._plan is not None
        return self._plan

    @property
    def value_guard(self) -> Any:
        """The ``ValueGuard`` behind a local model (None for remote models)."""
        return self._guard

    @property
    def _llm_type(self) -> str:
        return "causalguard-value-guard"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        name = str(kwargs.get("model") or self.model or self.inner._llm_type)
        return LangSmithParams(
            ls_provider="causalguard",
            ls_model_name=name,
            ls_model_type="chat",
            ls_temperature=self.temperature,
            ls_max_tokens=self.max_tokens,
            ls_stop=stop or self.stop,
        )

    def close(self) -> None:
        if self._guard is not None:
            self._guard.close()

    # ---- sync -----------------------------------------------------------------------------------
    def _composed(self, messages: list[BaseMessage], profile: str) -> list[BaseMessage]:
        return to_messages(
            compose_messages(to_dicts(messages), self._system_prompt, self._plan_for(profile).role_instructions())
        )

    def _response_metadata(self, profile: str) -> dict[str, Any]:
        return {
            "causalguard_profile": profile,
            "causalguard_levers": [lever.id for lever in self._plan_for(profile).levers],
        }

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        profile = self._profile(kwargs)
        if self._guard is not None:
            reply = self._guard.generate(to_dicts(messages), profile=profile, **self._local_options(stop, kwargs))
            message = AIMessage(
                content=reply.text,
                response_metadata=self._response_metadata(profile),
                usage_metadata={
                    "input_tokens": reply.prompt_tokens,
                    "output_tokens": reply.completion_tokens,
                    "total_tokens": reply.prompt_tokens + reply.completion_tokens,
                },
            )
            return ChatResult(generations=[ChatGeneration(message=message)])
        started = time.perf_counter()
        outcome: RequestOutcome = "error"
        try:
            answer = self.inner.invoke(self._composed(messages, profile), stop=stop or self.stop, **kwargs)
            outcome = "ok"
        finally:
            self._count(profile, outcome, time.perf_counter() - started)
        message = AIMessage(
            content=answer.content, response_metadata={**answer.response_metadata, **self._response_metadata(profile)}
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        profile = self._profile(kwargs)
        if self._guard is not None:
            pieces: Iterator[str] = self._guard.stream(
                to_dicts(messages), profile=profile, **self._local_options(stop, kwargs)
            )
            try:
                for piece in pieces:
                    if run_manager is not None:
                        run_manager.on_llm_new_token(piece)
                    yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
            finally:
                pieces.close()  # type: ignore[attr-defined]  # stops generation if the consumer left early
            return
        started = time.perf_counter()
        outcome: RequestOutcome = "error"
        try:
            for chunk in self.inner.stream(self._composed(messages, profile), stop=stop or self.stop, **kwargs):
                if run_manager is not None and chunk.text:
                    run_manager.on_llm_new_token(chunk.text)
                yield ChatGenerationChunk(message=AIMessageChunk(content=chunk.content))
            outcome = "ok"
        finally:
            self._count(profile, outcome, time.perf_counter() - started)

    # ---- async ----------------------------------------------------------------------------------
    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self._guard is not None:
            return await asyncio.to_thread(self._generate, messages, stop, None, **kwargs)
        profile = self._profile(kwargs)
        started = time.perf_counter()
        outcome: RequestOutcome = "error"
        try:
            answer = await self.inner.ainvoke(self._composed(messages, profile), stop=stop or self.stop, **kwargs)
            outcome = "ok"
        finally:
            self._count(profile, outcome, time.perf_counter() - started)
        message = AIMessage(
            content=answer.content, response_metadata={**answer.response_metadata, **self._response_metadata(profile)}
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        if self._guard is None:
            profile = self._profile(kwargs)
            async for chunk in self.inner.astream(self._composed(messages, profile), stop=stop or self.stop, **kwargs):
                yield ChatGenerationChunk(message=AIMessageChunk(content=chunk.content))
            return
        chunks = self._stream(messages, stop, None, **kwargs)
        try:
            while True:
                piece = await asyncio.to_thread(_next_or_none, chunks)
                if piece is None:
                    break
                if run_manager is not None:
                    await run_manager.on_llm_new_token(piece.text)
                yield piece
        finally:
            await asyncio.to_thread(chunks.close)  # type: ignore[attr-defined]

    def _count(self, profile: str, outcome: RequestOutcome, seconds: float) -> None:
        if self._metrics is None:
            return
        plan = self._plan_for(profile)
        self._metrics.count_request(
            profile, "role" if plan.levers else "none", outcome, seconds, [lever.kind for lever in plan.levers]
        )
