"""Batched forward passes over many continuations of one shared prompt prefix.

The prefix (role, instructions, few-shot examples) is run once; its KV cache is copied for each
batch of continuations, which are left-padded with explicit position ids, so every continuation
sees exactly the positions it would have in a full forward pass. ``reuse_prefix=False`` runs full
sequences instead (the baseline for the prefix-reuse benchmark); results agree to float tolerance.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch


def next_token_logits(
    model: Any,
    prefix: Sequence[int],
    continuations: Sequence[Sequence[int]],
    *,
    pad_id: int,
    batch_size: int,
    reuse_prefix: bool = True,
) -> torch.Tensor:
    """Logits of the token after each ``prefix + continuation``: a float32 tensor [N, vocab]."""
    out = []
    with torch.inference_mode():
        state = _prefix_state(model, prefix) if reuse_prefix else None
        for start in range(0, len(continuations), batch_size):
            batch = continuations[start : start + batch_size]
            logits = _forward(model, prefix, batch, state, pad_id=pad_id, keep=1)
            out.append(logits[:, -1].float())
    return torch.cat(out) if out else torch.empty(0)


def continuation_logprobs(
    model: Any,
    prefix: Sequence[int],
    continuations: Sequence[Sequence[int]],
    *,
    pad_id: int,
    batch_size: int,
    reuse_prefix: bool = True,
) -> list[torch.Tensor]:
    """Per-token log-probabilities of each continuation given the prefix (a 1-D tensor each)."""
    out: list[torch.Tensor] = []
    with torch.inference_mode():
        state = _prefix_state(model, prefix) if reuse_prefix else None
        for start in range(0, len(continuations), batch_size):
            batch = continuations[start : start + batch_size]
            width = max(len(c) for c in batch)
            # Keep the logits that predict every continuation token: the last `width` positions,
            # plus (without prefix reuse) the position before them.
            logits = _forward(model, prefix, batch, state, pad_id=pad_id, keep=width if state else width + 1)
            for row, tokens in enumerate(batch):
                n = len(tokens)
                target = torch.tensor(tokens)
                if state is not None:
                    first = torch.log_softmax(state.last_logits, -1)[tokens[0]].reshape(1)
                    rest_logits = logits[row, width - n : width - 1].float()
                    rest = torch.log_softmax(rest_logits, -1).gather(1, target[1:, None])[:, 0]
                    out.append(torch.cat([first, rest]))
                else:
                    pred = logits[row, width - n : width].float()
                    out.append(torch.log_softmax(pred, -1).gather(1, target[:, None])[:, 0])
    return out


class _PrefixState:
    def __init__(self, cache: Any, last_logits: torch.Tensor, length: int) -> None:
        self.cache = cache
        self.last_logits = last_logits
        self.length = length


def _prefix_state(model: Any, prefix: Sequence[int]) -> _PrefixState:
    ids = torch.tensor([list(prefix)])
    out = model(input_ids=ids, use_cache=True)
    return _PrefixState(out.past_key_values, out.logits[0, -1].float(), len(prefix))


def _forward(
    model: Any,
    prefix: Sequence[int],
    batch: Sequence[Sequence[int]],
    state: _PrefixState | None,
    *,
    pad_id: int,
    keep: int,
) -> torch.Tensor:
    rows = batch if state is not None else [list(prefix) + list(c) for c in batch]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    offset = state.length if state is not None else 0
    positions = (offset + mask.cumsum(1) - 1).clamp(min=0)
    kwargs: dict[str, Any] = {}
    if state is not None:
        cache = copy.deepcopy(state.cache)
        cache.batch_repeat_interleave(len(rows))
        mask = torch.cat([torch.ones((len(rows), state.length), dtype=torch.long), mask], 1)
        kwargs["past_key_values"] = cache
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        logits_to_keep=keep,
        use_cache=state is not None,
        **kwargs,
    )
    return out.logits
