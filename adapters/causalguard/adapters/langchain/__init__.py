"""LangChain chat models: a local Hugging Face chat model, and a value guard around any chat model."""

from causalguard.adapters.langchain.guarded import ChatValueGuard
from causalguard.adapters.langchain.local_hf import ChatHuggingFaceLocal

__all__ = ["ChatHuggingFaceLocal", "ChatValueGuard"]
