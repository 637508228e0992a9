"""Evaluation figures for an SAE on held-out text, with sae-lens's definitions.

- ``l0``: mean number of active features per token.
- ``explained_variance``: 1 - sum((h - h_hat)^2) / sum((h - mean h)^2) over tokens.
- ``ce_loss_recovered``: (CE_zero - CE_sae) / (CE_zero - CE_clean), where CE_sae splices the SAE's
  reconstruction into the residual stream and CE_zero replaces it with zeros.
- ``dead_fraction``: features that never fire on the evaluation tokens.
- ``decoder_mean_abs_cosine``: mean |cosine| between 256 sampled decoder directions (near 0 for
  distinct features; near 1 when they collapse onto one direction, a failure we met and fixed).

Sparsity and variance figures leave out each text's first token (as sae-lens leaves out special
tokens): its attention-sink activations are orders of magnitude larger than the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from causalguard.adapters.hf.hooks import replaced_layer_output
from causalguard.adapters.hf.sae import LoadedSae
from causalguard.models.loaded import LoadedModel


def _ce(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> float:
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    target = ids[:, 1:]
    keep = mask[:, 1:].bool()
    losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
    return float(losses[keep].mean())


def sae_metrics(
    lm: LoadedModel, loaded: LoadedSae, texts: Sequence[str], *, max_tokens: int = 128, batch_size: int = 8
) -> dict[str, float]:
    sae = loaded.sae
    captured: list[torch.Tensor] = []
    ce = {"clean": 0.0, "sae": 0.0, "zero": 0.0}
    batches = 0
    fired = torch.zeros(loaded.d_sae, dtype=torch.bool)
    l0_sum, tokens, sse, acts_all = 0.0, 0, 0.0, []

    def capture(hidden: torch.Tensor) -> torch.Tensor:
        captured.append(hidden.detach())
        return hidden

    def reconstruct(hidden: torch.Tensor) -> torch.Tensor:
        return sae.decode(sae.encode(hidden.to(sae.W_dec.dtype))).to(hidden.dtype)

    tokenizer = lm.tokenizer
    tokenizer.padding_side = "right"
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(
                list(texts[start : start + batch_size]),
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max_tokens,
            )
            captured.clear()
            with replaced_layer_output(lm.model, loaded.layer, capture):
                ce["clean"] += _ce(lm.model, enc.input_ids, enc.attention_mask)
            with replaced_layer_output(lm.model, loaded.layer, reconstruct):
                ce["sae"] += _ce(lm.model, enc.input_ids, enc.attention_mask)
            with replaced_layer_output(lm.model, loaded.layer, torch.zeros_like):
                ce["zero"] += _ce(lm.model, enc.input_ids, enc.attention_mask)
            batches += 1
            keep = enc.attention_mask.bool().clone()
            keep[:, 0] = False  # the first token's attention-sink activations would dominate every figure
            hidden = captured[0][keep].to(sae.W_dec.dtype)  # (tokens, d_in)
            feats = sae.encode(hidden)
            recon = sae.decode(feats)
            active = feats > 0
            fired |= active.any(0)
            l0_sum += float(active.sum())
            tokens += hidden.shape[0]
            sse += float(((hidden - recon) ** 2).sum())
            acts_all.append(hidden)
    every = torch.cat(acts_all)
    sst = float(((every - every.mean(0)) ** 2).sum())
    clean, spliced, zero = (ce[k] / batches for k in ("clean", "sae", "zero"))
    decoder = sae.W_dec.detach().float()
    sample = decoder[torch.randperm(decoder.shape[0], generator=torch.Generator().manual_seed(0))[:256]]
    sample = sample / sample.norm(dim=1, keepdim=True).clamp_min(1e-8)
    cosines = (sample @ sample.T).abs()
    mean_cosine = float((cosines.sum() - cosines.diagonal().sum()) / (len(sample) * (len(sample) - 1)))
    return {
        "tokens": float(tokens),
        "decoder_mean_abs_cosine": mean_cosine,
        "l0": l0_sum / tokens,
        "explained_variance": 1.0 - sse / sst,
        "ce_loss_clean": clean,
        "ce_loss_with_sae": spliced,
        "ce_loss_zero_ablation": zero,
        "ce_loss_recovered": (zero - spliced) / (zero - clean),
        "dead_fraction": float((~fired).float().mean()),
    }
