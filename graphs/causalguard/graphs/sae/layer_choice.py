"""Choose the SAE's layer by measurement: where do value roles separate most in the residual stream?

For each dimension, the last-context-token activations under its inclined and disinclined roles
(each role x each item statement, completion framing) give a direction (difference of means, fitted
on half the items) and a held-out separation on the other half (Cohen's d along that direction).
A layer's score is the median over dimensions; the best-scoring layer wins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack

import torch

from causalguard.adapters.hf.hooks import replaced_layer_output
from causalguard.models.loaded import LoadedModel
from causalguard.models.prompting import encode_prefix
from causalguard.roles.value_roles import value_role
from causalguard.scoring.statement import context_text
from causalguard.steering_conditions import NoSteering
from causalguard.values.inventory import Inventory


def _last_token_states(lm: LoadedModel, texts: Sequence[str], layers: Sequence[int]) -> dict[int, torch.Tensor]:
    out: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}

    def capture(layer: int) -> Callable[[torch.Tensor], torch.Tensor]:
        def keep_last(hidden: torch.Tensor) -> torch.Tensor:
            out[layer].append(hidden[0, -1].detach().float())
            return hidden

        return keep_last

    # Our own removable hooks, not output_hidden_states (transformers 5 keeps hooks installed for that)
    with torch.inference_mode(), ExitStack() as stack:
        for layer in layers:
            stack.enter_context(replaced_layer_output(lm.model, layer, capture(layer)))
        for text in texts:
            lm.model(input_ids=torch.tensor([encode_prefix(lm.tokenizer, text)]))
    return {layer: torch.stack(v) for layer, v in out.items()}


def layer_separation(lm: LoadedModel, inventory: Inventory, layers: Sequence[int]) -> dict[int, float]:
    """Median held-out Cohen's d of inclined vs disinclined value roles, per layer."""
    per_layer: dict[int, list[float]] = {layer: [] for layer in layers}
    for dim in inventory.dimensions:
        statements = [item.statement for item in dim.items]
        texts = {d: [context_text(value_role(dim, d), NoSteering()) + s for s in statements] for d in (1, -1)}
        states = {d: _last_token_states(lm, texts[d], layers) for d in (1, -1)}
        fit, test = slice(0, None, 2), slice(1, None, 2)
        for layer in layers:
            pro, con = states[1][layer], states[-1][layer]
            direction = pro[fit].mean(0) - con[fit].mean(0)
            direction = direction / direction.norm().clamp_min(1e-8)
            a, b = pro[test] @ direction, con[test] @ direction
            pooled = torch.sqrt((a.var() + b.var()) / 2).clamp_min(1e-8)
            per_layer[layer].append(float((a.mean() - b.mean()) / pooled))
    return {layer: float(torch.tensor(v).median()) for layer, v in per_layer.items()}
