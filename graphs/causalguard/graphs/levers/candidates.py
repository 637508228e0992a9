"""Candidate SAE features for each value, found by activation contrasts (no steering yet).

Per dimension, two contrasts of mean feature activation over the tokens of each text:
- item polarity: the baseline context with the dimension's pro statements vs its reversed ones;
- value roles: every statement under the inclined role's context vs the disinclined role's.
Each contrast is standardised per feature (difference over pooled spread); a feature's score is the
sum. Features that never fire or fire on most tokens are skipped. Also the paper's rule: the features
most active on the span " your values" of a prompt that asks about them (their target is unknown
until measured).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from causalguard.adapters.hf.hooks import replaced_layer_output
from causalguard.adapters.hf.interventions import span_positions
from causalguard.adapters.hf.sae import LoadedSae
from causalguard.models.loaded import LoadedModel
from causalguard.models.prompting import chat_text, encode_prefix
from causalguard.roles.role import BASELINE
from causalguard.roles.value_roles import value_role
from causalguard.scoring.statement import context_text
from causalguard.steering_conditions import NoSteering
from causalguard.values.inventory import Inventory

YOUR_VALUES_PROMPT = "Before we start, tell me about your values. What matters most to you in life?"


@dataclass(frozen=True)
class Candidate:
    feature: int
    target: str | None  # None: found by the " your values" rule, target unknown until measured
    score: float
    source: str  # "contrast" or "your_values"


def _token_features(lm: LoadedModel, sae: LoadedSae, text: str) -> tuple[torch.Tensor, torch.Tensor]:
    """SAE feature activations (tokens, d_sae) and residual norms (tokens,) at the SAE's layer."""
    captured: list[torch.Tensor] = []

    def capture(hidden: torch.Tensor) -> torch.Tensor:
        captured.append(hidden[0].detach())
        return hidden

    ids = torch.tensor([encode_prefix(lm.tokenizer, text)])
    with torch.inference_mode(), replaced_layer_output(lm.model, sae.layer, capture):
        lm.model(input_ids=ids)
    hidden = captured[0][1:]  # skip the first token: attention-sink norms are outliers
    with torch.inference_mode():
        features = sae.sae.encode(hidden.to(sae.sae.W_dec.dtype)).float()
    return features, hidden.float().norm(dim=-1)


def _mean_features(lm: LoadedModel, sae: LoadedSae, texts: Sequence[str]) -> torch.Tensor:
    return torch.stack([_token_features(lm, sae, t)[0].mean(0) for t in texts])


def _standardised(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    spread = torch.sqrt((a.var(0) + b.var(0)) / 2) + 1e-3
    return (a.mean(0) - b.mean(0)) / spread


def residual_norm(lm: LoadedModel, sae: LoadedSae, texts: Sequence[str]) -> float:
    """Median residual-stream norm at the SAE's layer: the unit of steering strength."""
    norms = torch.cat([_token_features(lm, sae, t)[1] for t in texts])
    return float(norms.median())


def find_candidates(
    lm: LoadedModel,
    sae: LoadedSae,
    inventory: Inventory,
    *,
    per_value: int = 1,
    your_values: int = 2,
    max_density: float = 0.3,
) -> list[Candidate]:
    baseline = context_text(BASELINE, NoSteering())
    density = torch.zeros(sae.d_sae)
    out: list[Candidate] = []
    scores: dict[str, torch.Tensor] = {}
    for dim in inventory.dimensions:
        pro = [baseline + i.statement for i in dim.items if i.polarity > 0]
        rev = [baseline + i.statement for i in dim.items if i.polarity < 0]
        statements = [i.statement for i in dim.items]
        inclined = [context_text(value_role(dim, 1), NoSteering()) + s for s in statements]
        disinclined = [context_text(value_role(dim, -1), NoSteering()) + s for s in statements]
        polarity = _standardised(_mean_features(lm, sae, pro), _mean_features(lm, sae, rev))
        a, b = _mean_features(lm, sae, inclined), _mean_features(lm, sae, disinclined)
        density += ((a > 0).float().mean(0) + (b > 0).float().mean(0)) / 2
        scores[dim.name] = polarity + _standardised(a, b)
    density /= len(inventory.dimensions)
    usable = (density > 0) & (density < max_density)
    taken: set[int] = set()
    for name, score in scores.items():
        ranked = torch.argsort(torch.where(usable, score, torch.tensor(-1e9)), descending=True)
        picked = [int(f) for f in ranked if int(f) not in taken][:per_value]
        taken.update(picked)
        out += [Candidate(f, name, round(float(score[f]), 3), "contrast") for f in picked]
    prompt = chat_text(lm.tokenizer, None, YOUR_VALUES_PROMPT)
    positions = sorted(span_positions(lm.tokenizer, prompt, " your values"))
    acts, _ = _token_features(lm, sae, prompt)
    added_bos = len(encode_prefix(lm.tokenizer, prompt)) - len(lm.tokenizer(prompt, add_special_tokens=False).input_ids)
    rows = [p + added_bos - 1 for p in positions if 0 <= p + added_bos - 1 < acts.shape[0]]  # row 0 = token 1
    span_acts = acts[rows].mean(0) if rows else torch.zeros(sae.d_sae)
    ranked = torch.argsort(torch.where(usable, span_acts, torch.tensor(-1e9)), descending=True)
    picked = [int(f) for f in ranked if int(f) not in taken][:your_values]
    out += [Candidate(f, None, round(float(span_acts[f]), 3), "your_values") for f in picked]
    return out
