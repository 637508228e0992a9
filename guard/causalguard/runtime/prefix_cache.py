"""A prefix cache for prefill: the keys and values of recent prompts, reused by prompts that start the same way.

Chatbots send the same operator prompt and role levers on every request, so the continuous batcher
(``runtime/batcher.py``) prefills only what follows the longest prefix a new prompt shares with a
recent one. Causal attention makes a reused prefix what the prefill would have computed (up to the
float rounding of another pass). Prefixes are shared only under the same SAE interventions (the same
objects), since those change the keys and values of every steered position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(eq=False)
class CachedPrefix:
    """A recent prompt's keys and values, per layer ``[1, kv heads, tokens, head dim]``."""

    tokens: tuple[int, ...]
    interventions: tuple[Any, ...]
    layers: list[tuple[torch.Tensor, torch.Tensor]]


class PrefixCache:
    """The keys and values of recent prompts, for prefill to reuse (least recently used go first).

    ``lookup`` finds the longest prefix a prompt shares with an entry under the *same* SAE interventions
    (the same objects: the guard builds them once per plan), leaving at least one prompt token to compute
    so there are logits to take the first token from."""

    def __init__(self, max_tokens: int, min_reuse: int = 8) -> None:
        if max_tokens < 0:
            raise ValueError(f"prefix_cache_tokens must be >= 0, got {max_tokens}")
        self.max_tokens, self.min_reuse = max_tokens, min_reuse
        self._entries: list[CachedPrefix] = []
        self.hits = 0
        self.reused_tokens = 0

    @property
    def tokens(self) -> int:
        return sum(len(entry.tokens) for entry in self._entries)

    def lookup(self, prompt: Sequence[int], interventions: tuple[Any, ...]) -> tuple[int, CachedPrefix | None]:
        """``(n, entry)``: reuse ``entry``'s first ``n`` positions (``(0, None)`` when nothing is worth it)."""
        best, found = 0, None
        for entry in self._entries:
            if not _same(entry.interventions, interventions):
                continue
            shared = _common_prefix(entry.tokens, prompt)
            if shared > best:
                best, found = shared, entry
        best = min(best, len(prompt) - 1)
        if found is None or best < self.min_reuse:
            return 0, None
        self._entries.remove(found)
        self._entries.append(found)  # most recently used last
        self.hits += 1
        self.reused_tokens += best
        return best, found

    def store(
        self, prompt: Sequence[int], interventions: tuple[Any, ...], layers: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> None:
        """Keep a prompt's per-layer keys and values (exactly ``len(prompt)`` positions) for later prompts."""
        tokens = tuple(prompt)
        if not self.max_tokens or len(tokens) > self.max_tokens:
            return
        self._entries = [e for e in self._entries if not (e.tokens == tokens and _same(e.interventions, interventions))]
        self._entries.append(CachedPrefix(tokens, interventions, layers))
        while self.tokens > self.max_tokens:
            self._entries.pop(0)

    def clear(self) -> None:
        self._entries = []


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def stacked_prefixes(
    found: Sequence[tuple[int, CachedPrefix | None]], width: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, the reused prefixes of a batch's rows stacked and left-padded to ``width`` positions (zeros
    for a row that reuses nothing)."""
    template = next(entry for _, entry in found if entry is not None)
    out = []
    for layer, (keys, _) in enumerate(template.layers):
        empty = torch.zeros((1, keys.shape[1], width, keys.shape[3]), dtype=keys.dtype)
        stacked = []
        for k in (0, 1):
            stacked.append(
                torch.cat(
                    [
                        pad_left(entry.layers[layer][k][:, :, :n], width - n) if entry is not None else empty
                        for n, entry in found
                    ]
                )
            )
        out.append((stacked[0], stacked[1]))
    return out


def pad_left(states: torch.Tensor, columns: int) -> torch.Tensor:
    """``[rows, heads, width, dim]`` states with ``columns`` zero columns before the first."""
    return torch.nn.functional.pad(states, (0, 0, columns, 0)) if columns else states
