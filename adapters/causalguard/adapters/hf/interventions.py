"""What an SAE intervention does: feature edits, applied at a position scope.

- ``add``: h += value * W_dec[f] (the paper's steering; value is the strength)
- ``clamp``: set feature f's activation to ``value`` and keep the SAE's reconstruction error:
  h += (value - f(h)) * W_dec[f]
- ``multiply``: scale an active feature: h += (value - 1) * f(h) * W_dec[f]

Scopes: ``all`` tokens, ``prompt`` tokens only, ``generated`` tokens only (positions at or after the
row's prompt length: the first generated token is predicted from the unsteered last prompt token),
or ``span``: the prompt tokens overlapping each occurrence of a string (the paper's " your values").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from causalguard.adapters.hf.sae import LoadedSae

EditMode = Literal["add", "clamp", "multiply"]
ScopeKind = Literal["all", "prompt", "generated", "span"]


@dataclass(frozen=True)
class FeatureEdit:
    feature: int
    mode: EditMode
    value: float

    def __post_init__(self) -> None:
        if self.mode not in ("add", "clamp", "multiply"):
            raise ValueError(f"unknown edit mode {self.mode!r}; use add, clamp or multiply")


@dataclass(frozen=True)
class Scope:
    kind: ScopeKind = "all"
    text: str | None = None  # for kind == "span"

    def __post_init__(self) -> None:
        if self.kind not in ("all", "prompt", "generated", "span"):
            raise ValueError(f"unknown scope {self.kind!r}; use all, prompt, generated or span")
        if (self.kind == "span") != (self.text is not None):
            raise ValueError("a 'span' scope needs text, and only a span scope takes text")


class Intervention(Protocol):
    """What the dispatcher hooks apply: a change to one layer's output at a scope's tokens (an SAE edit, a
    steering vector)."""

    @property
    def layer(self) -> int: ...

    @property
    def scope(self) -> Scope: ...

    def delta(self, hidden: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class SaeIntervention:
    """Edits of one SAE's features at one scope. Validated on construction (before any generation)."""

    sae: LoadedSae
    edits: tuple[FeatureEdit, ...]
    scope: Scope = Scope()

    def __post_init__(self) -> None:
        if not self.edits:
            raise ValueError("an intervention needs at least one feature edit")
        seen: set[int] = set()
        for edit in self.edits:
            self.sae.check_feature(edit.feature)
            if edit.feature in seen:
                raise ValueError(f"feature {edit.feature} is edited twice; give one edit per feature")
            seen.add(edit.feature)

    @property
    def layer(self) -> int:
        return self.sae.layer

    def delta(self, hidden: torch.Tensor) -> torch.Tensor:
        """The change to add to ``hidden`` (tokens, d_in) at every token (scope is applied by the caller)."""
        decoder = self.sae.sae.W_dec  # (d_sae, d_in)
        features = [e.feature for e in self.edits]
        needs_acts = any(e.mode != "add" for e in self.edits)
        acts = self.sae.sae.encode(hidden.to(decoder.dtype))[..., features] if needs_acts else None
        coefficients = torch.zeros(hidden.shape[0], len(features), dtype=decoder.dtype)
        for k, edit in enumerate(self.edits):
            if edit.mode == "add":
                coefficients[:, k] = edit.value
            elif edit.mode == "clamp":
                assert acts is not None
                coefficients[:, k] = edit.value - acts[:, k]
            else:
                assert acts is not None
                coefficients[:, k] = (edit.value - 1.0) * acts[:, k]
        return (coefficients @ decoder[features]).to(hidden.dtype)


def span_positions(tokenizer: object, prompt: str, text: str) -> frozenset[int]:
    """Logical token positions (0 = first prompt token) overlapping any occurrence of ``text``."""
    encoded = tokenizer(prompt, return_offsets_mapping=True, add_special_tokens=False)  # type: ignore[operator]
    starts = []
    begin = prompt.find(text)
    while begin >= 0:
        starts.append((begin, begin + len(text)))
        begin = prompt.find(text, begin + 1)
    if not starts:
        raise ValueError(f"span text {text!r} does not occur in the prompt")
    positions = set()
    for index, (a, b) in enumerate(encoded["offset_mapping"]):
        if any(a < end and b > start for start, end in starts):
            positions.add(index)
    return frozenset(positions)


def scope_mask(scope: Scope, positions: torch.Tensor, prompt_length: int, span: frozenset[int]) -> torch.Tensor:
    """Boolean mask over one row's tokens (``positions`` = their logical positions)."""
    if scope.kind == "all":
        return torch.ones_like(positions, dtype=torch.bool)
    if scope.kind == "prompt":
        return positions < prompt_length
    if scope.kind == "generated":
        return positions >= prompt_length
    return torch.tensor([int(p) in span for p in positions.tolist()], dtype=torch.bool)


def validate_layers(interventions: Sequence[Intervention], num_layers: int) -> None:
    for intervention in interventions:
        if not 0 <= intervention.layer < num_layers:
            raise ValueError(f"unknown layer {intervention.layer}: the model has {num_layers}")
