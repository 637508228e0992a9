"""LangChain: the guard as a chat model around a local HF model (SAE + roles) and around any other
chat model (roles only); langchain-tests' standard unit tests for both chat model classes."""

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_tests.unit_tests import ChatModelUnitTests

from causalguard import ConfigError
from causalguard.adapters.hf.hooks import decoder_layers
from causalguard.adapters.langchain import ChatHuggingFaceLocal, ChatValueGuard
from causalguard.config import GuardConfig
from causalguard.metrics import GuardMetrics
from causalguard.models.loaded import LoadedModel
from tests.guard_fakes import GUARD_YAML, fake_bundle, fake_bundle_with_sae


class EchoSystemChatModel(BaseChatModel):
    """A stand-in for a remote API: answers with the system prompt it received."""

    @property
    def _llm_type(self) -> str:
        return "echo-system"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        system = " | ".join(m.text for m in messages if m.type == "system")
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=f"SYSTEM: {system}"))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        text = self._generate(messages).generations[0].message.text
        for word in text.split(" "):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word + " "))


def _config(**update: Any) -> GuardConfig:
    import yaml

    data = yaml.safe_load(GUARD_YAML)
    data.update(update)
    return GuardConfig.model_validate(data)


PROMPT = ChatPromptTemplate.from_messages([("system", "You are terse."), ("human", "{question}")])


def test_remote_models_get_role_levers_in_the_system_prompt() -> None:
    guard = ChatValueGuard(inner=EchoSystemChatModel(), config=_config(), bundle=fake_bundle(), guard_profile="kind")
    answer = (PROMPT | guard | StrOutputParser()).invoke({"question": "hi"})
    assert answer.startswith("SYSTEM: You are terse.") and "inclined to benevolence" in answer
    streamed = "".join((PROMPT | guard | StrOutputParser()).stream({"question": "hi"}))
    assert streamed.strip() == answer
    # the operator's system prompt comes first, before the client's system text and the lever
    operated = ChatValueGuard(
        inner=EchoSystemChatModel(),
        config=_config(system_prompt="Be kind."),
        bundle=fake_bundle(),
        guard_profile="kind",
    )
    assert (
        (PROMPT | operated | StrOutputParser())
        .invoke({"question": "hi"})
        .startswith("SYSTEM: Be kind.\n\nYou are terse.")
    )


def test_a_call_picks_its_profile_and_an_unknown_one_is_an_error() -> None:
    guard = ChatValueGuard(inner=EchoSystemChatModel(), config=_config(), bundle=fake_bundle(), guard_profile="kind")
    plain = guard.bind(profile="plain").invoke("hi")
    assert "inclined to benevolence" not in plain.text and plain.response_metadata["causalguard_profile"] == "plain"
    assert plain.response_metadata["causalguard_levers"] == []
    kind = guard.invoke("hi", guard_profile="kind")
    assert "inclined to benevolence" in kind.text and kind.response_metadata["causalguard_profile"] == "kind"
    with pytest.raises(ValueError, match=r"no profile 'kindd'.*profiles: default, kind, plain"):
        guard.bind(profile="kindd").invoke("hi")


def test_remote_models_cannot_take_sae_levers_unless_falling_back() -> None:
    sae_only = {"targets": {"power": {"direction": "decrease"}}, "method": "sae", "protected": {}}
    with pytest.raises(ConfigError, match="need a local HF model"):
        ChatValueGuard(
            inner=EchoSystemChatModel(), config=_config(**sae_only, fallback_to_roles=False), bundle=fake_bundle()
        )
    guard = ChatValueGuard(inner=EchoSystemChatModel(), config=_config(**sae_only), bundle=fake_bundle())
    assert [lever.kind for lever in guard.plan.levers] == ["role"]


def test_default_profile_with_protection_is_infeasible_for_remote_models() -> None:
    # the only lever keeping achievement within 0.05 is an SAE feature
    with pytest.raises(ConfigError, match="infeasible"):
        ChatValueGuard(inner=EchoSystemChatModel(), config=_config(), bundle=fake_bundle())


def test_a_local_hf_model_is_guarded_with_sae_levers(tiny_lm: LoadedModel, tiny_sae: Any) -> None:
    metrics = GuardMetrics()
    local = ChatHuggingFaceLocal(lm=tiny_lm, max_tokens=6)
    guard = ChatValueGuard(
        inner=local, config=_config(), bundle=fake_bundle_with_sae(tiny_sae.path), metrics=metrics, max_tokens=6
    )
    try:
        chain = PROMPT | guard | StrOutputParser()
        answer = chain.invoke({"question": "What matters?"})
        assert answer == "".join(chain.stream({"question": "What matters?"}))
        assert guard.plan.uses_sae
        unguarded = (PROMPT | local | StrOutputParser()).invoke({"question": "What matters?"})
        assert answer != unguarded
        assert (
            metrics.registry.get_sample_value(
                "causalguard_requests_total", {"profile": "default", "method": "sae", "outcome": "ok"}
            )
            == 2
        )
    finally:
        guard.close()
    assert all(not layer._forward_hooks for layer in decoder_layers(tiny_lm.model))


async def _async_roundtrip(chain: Any) -> tuple[str, str]:
    whole = await chain.ainvoke({"question": "What matters?"})
    pieces = [piece async for piece in chain.astream({"question": "What matters?"})]
    return whole, "".join(pieces)


def test_async_paths_match_sync(tiny_lm: LoadedModel, tiny_sae: Any) -> None:
    import asyncio

    guard = ChatValueGuard(
        inner=ChatHuggingFaceLocal(lm=tiny_lm),
        config=_config(),
        bundle=fake_bundle_with_sae(tiny_sae.path),
        max_tokens=5,
    )
    try:
        chain = PROMPT | guard | StrOutputParser()
        whole, streamed = asyncio.run(_async_roundtrip(chain))
        assert whole == streamed == chain.invoke({"question": "What matters?"})
    finally:
        guard.close()


@lru_cache(maxsize=1)
def _tiny_for_standard_tests() -> LoadedModel:
    from tests.tiny_model import tiny_llama

    return tiny_llama()


class TestChatHuggingFaceLocalStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatHuggingFaceLocal

    @property
    def chat_model_params(self) -> dict:
        return {"lm": _tiny_for_standard_tests()}


class TestChatValueGuardStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatValueGuard

    @property
    def chat_model_params(self) -> dict:
        return {
            "inner": EchoSystemChatModel(),
            "config": _config(targets={"benevolence": {"direction": "increase"}}, protected={}),
            "bundle": fake_bundle(),
        }


def test_guard_config_file_path_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "guard.yaml"
    path.write_text(
        GUARD_YAML.replace("max_levers: 1", "max_levers: 1\nmethod: role").replace(
            "achievement: {tolerance: 0.05}", "achievement: {tolerance: 0.5}"
        )
    )
    guard = ChatValueGuard(inner=EchoSystemChatModel(), config=str(path), bundle=fake_bundle())
    assert [lever.id for lever in guard.plan.levers] == ["role:power:-"]
