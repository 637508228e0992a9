"""``ChatHuggingFaceLocal``: a LangChain chat model over a local transformers model (greedy by default).

Wrap it in ``ChatValueGuard`` to get SAE levers as well as role levers: the guard recognises the local
model and steers it through its hooks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

from causalguard.adapters.langchain.messages import to_dicts


class ChatHuggingFaceLocal(BaseChatModel):
    """A local HF chat model (``lm``: a ``causalguard.models.LoadedModel``)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    lm: Any = Field(description="causalguard.models.LoadedModel (model + tokenizer)")
    model: str | None = Field(default=None, description="Model name for tracing; default: the loaded name.")
    temperature: float = 0.0
    max_tokens: int = 64
    stop: list[str] | None = None
    timeout: float | None = None
    max_retries: int = 0
    streaming: bool = False

    @property
    def _llm_type(self) -> str:
        return "causalguard-hf-local"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        name = str(kwargs.get("model") or self.model or getattr(self.lm, "name", "hf"))
        return LangSmithParams(
            ls_provider="huggingface",
            ls_model_name=name,
            ls_model_type="chat",
            ls_temperature=self.temperature,
            ls_max_tokens=self.max_tokens,
            ls_stop=stop or self.stop,
        )

    def _inputs(self, messages: list[BaseMessage]) -> Any:
        text = self.lm.tokenizer.apply_chat_template(to_dicts(messages), tokenize=False, add_generation_prompt=True)
        return self.lm.tokenizer(text, return_tensors="pt", add_special_tokens=False)

    def _sampling(self) -> dict[str, Any]:
        return {"do_sample": True, "temperature": self.temperature} if self.temperature > 0 else {"do_sample": False}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        import torch

        inputs = self._inputs(messages)
        with torch.inference_mode():
            out = self.lm.model.generate(
                **inputs,
                max_new_tokens=kwargs.get("max_tokens", self.max_tokens),
                pad_token_id=self.lm.pad_token_id,
                **self._sampling(),
            )
        new = out[0, inputs.input_ids.shape[1] :]
        text = _cut(self.lm.tokenizer.decode(new, skip_special_tokens=True), stop or self.stop)
        usage = {
            "input_tokens": int(inputs.input_ids.shape[1]),
            "output_tokens": int(new.shape[0]),
            "total_tokens": int(inputs.input_ids.shape[1] + new.shape[0]),
        }
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text, usage_metadata=usage))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        import torch
        from transformers import TextIteratorStreamer

        inputs = self._inputs(messages)
        streamer = TextIteratorStreamer(self.lm.tokenizer, skip_prompt=True, skip_special_tokens=True)

        def run() -> None:
            with torch.inference_mode():
                self.lm.model.generate(
                    **inputs,
                    max_new_tokens=kwargs.get("max_tokens", self.max_tokens),
                    pad_token_id=self.lm.pad_token_id,
                    streamer=streamer,
                    **self._sampling(),
                )

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        try:
            for piece in streamer:
                if piece:
                    if run_manager is not None:
                        run_manager.on_llm_new_token(piece)
                    yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        finally:
            worker.join()


def _cut(text: str, stop: list[str] | None) -> str:
    for word in stop or []:
        if word and word in text:
            text = text[: text.index(word)]
    return text
