"""Classifier-free guidance per row: a guided row decodes beside an unconditional twin and picks its
tokens from ``l_uncond + g * (l_cond - l_uncond)`` on next-token log-probabilities (Sanchez et al.
2023, the formula of transformers' ``UnbatchedClassifierFreeGuidanceLogitsProcessor``).

The conditional row is the guided prompt (a role wording in the system message); the twin is the same
conversation under the negative wording (the opposite pole, or no role at all). Both rows share the
batch and are fed the same chosen token, so each keeps its own KV cache and the twin costs one extra
row per guided row. ``g = 1`` is the conditional row alone, token for token.

    row = GenerationRow(prompt_ids, seed=7, guidance=Guidance(2.0, negative_prompt_ids))
    generate_rows(lm, [row, plain_row], max_new_tokens=64)    # the twin is added and removed inside
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

# Guidance scales beyond this make replies recite or collapse on every model tried; refusing them keeps a
# typo (20 for 2.0) from reaching users.
MAX_GUIDANCE_SCALE = 10.0


@dataclass(frozen=True)
class Guidance:
    """How a row is guided: ``scale`` g >= 1 and the token ids of the twin's (negative) prompt."""

    scale: float
    negative_prompt: tuple[int, ...]

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and 1.0 <= self.scale <= MAX_GUIDANCE_SCALE):
            raise ValueError(f"guidance scale must be in [1, {MAX_GUIDANCE_SCALE:g}], got {self.scale!r}")
        if not self.negative_prompt:
            raise ValueError("guidance needs a negative prompt of at least one token")


def guided_logits(conditional: torch.Tensor, unconditional: torch.Tensor, scale: float) -> torch.Tensor:
    """Next-token scores of a guided row: log-probs ``u + g * (c - u)`` (1-d or batched on the last dim)."""
    cond = torch.log_softmax(conditional.float(), dim=-1)
    if scale == 1.0:
        return cond
    uncond = torch.log_softmax(unconditional.float(), dim=-1)
    return uncond + scale * (cond - uncond)


@dataclass(frozen=True)
class TwinLayout:
    """Where each guided row's twin sits in a batch that appends the twins after the ``rows`` given."""

    rows: int  # the caller's rows, in order
    twins: tuple[tuple[int, int, float], ...]  # (row, twin row, scale)

    @classmethod
    def of(cls, guidances: Sequence[Guidance | None]) -> TwinLayout:
        twins, next_row = [], len(guidances)
        for row, guidance in enumerate(guidances):
            if guidance is not None:
                twins.append((row, next_row, guidance.scale))
                next_row += 1
        return cls(len(guidances), tuple(twins))

    @property
    def width(self) -> int:
        """Rows in the expanded batch."""
        return self.rows + len(self.twins)
