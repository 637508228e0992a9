"""Steering vectors: one residual-stream direction per value, added on generated tokens at one layer.

A bundle's ``vectors/`` folder holds ``vectors.safetensors`` (one float32 tensor ``[hidden]`` per value,
unit length) and ``vectors.json`` (the card: model fingerprint, hidden size, per value its layer, the
layer's median residual-stream norm, and how the direction was extracted). A vector lever of
strength s adds ``s * norm * direction`` to the layer's output on the tokens of its scope (default:
generated tokens, as persona vectors and CAA steer), through the same dispatcher hooks and per-row
plans as SAE edits (``adapters/hf/hooks.py``).

    vectors = load_vectors(bundle_dir / "vectors", hidden_size=576, fingerprint=lm.fingerprint)
    row = GenerationRow(prompt_ids, (vectors.intervention("benevolence", 0.5),))
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from causalguard.adapters.hf.interventions import Scope
from causalguard.errors import ConfigError

VECTORS_FILE = "vectors.safetensors"
VECTORS_CARD = "vectors.json"
VECTORS_SCHEMA = "causalguard.vectors/1"
MAX_VECTOR_STRENGTH = 8.0  # in median residual norms: far past where replies collapse


@dataclass(frozen=True, eq=False)
class VectorIntervention:
    """Add ``delta_vector`` (already scaled, ``[hidden]``) to ``layer``'s output at ``scope``'s tokens.

    Compared by identity, like SAE interventions: the prefix cache shares keys only under the very same
    intervention objects."""

    layer: int
    delta_vector: torch.Tensor
    scope: Scope = field(default_factory=lambda: Scope("generated"))

    def __post_init__(self) -> None:
        if self.delta_vector.ndim != 1:
            raise ValueError(f"a steering vector is 1-d, got shape {tuple(self.delta_vector.shape)}")
        if not bool(torch.isfinite(self.delta_vector).all()):
            raise ValueError("a steering vector must be finite")

    def delta(self, hidden: torch.Tensor) -> torch.Tensor:
        """The change to add at every token of ``hidden`` (tokens, d) (the caller applies the scope)."""
        return self.delta_vector.to(hidden.dtype).expand_as(hidden)


@dataclass(frozen=True)
class VectorEntry:
    """One value's direction: its layer, unit vector and the layer's median residual norm (the unit)."""

    value: str
    layer: int
    direction: torch.Tensor
    residual_norm: float


@dataclass(frozen=True)
class VectorSet:
    """A bundle's steering vectors (see the module docstring)."""

    folder: Path
    card: dict[str, Any]
    entries: Mapping[str, VectorEntry]

    def intervention(self, value: str, strength: float, scope: Scope | None = None) -> VectorIntervention:
        """The intervention of a vector lever: ``strength`` median residual norms along ``value``'s direction."""
        if value not in self.entries:
            raise KeyError(f"{self.folder}: no steering vector for '{value}' (have {', '.join(sorted(self.entries))})")
        if not (math.isfinite(strength) and abs(strength) <= MAX_VECTOR_STRENGTH):
            raise ValueError(f"vector strength must be finite and within +-{MAX_VECTOR_STRENGTH:g}, got {strength!r}")
        entry = self.entries[value]
        return VectorIntervention(
            entry.layer,
            entry.direction * (strength * entry.residual_norm),
            scope if scope is not None else Scope("generated"),
        )

    def layers(self) -> set[int]:
        return {e.layer for e in self.entries.values()}


def save_vectors(folder: Path, entries: Mapping[str, VectorEntry], card: dict[str, Any]) -> None:
    """Write ``vectors.safetensors`` and ``vectors.json`` (``card`` plus the per-value layers and norms)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {value: e.direction.detach().to(torch.float32).contiguous() for value, e in entries.items()}
    save_file(tensors, str(folder / VECTORS_FILE))
    doc = {
        **card,
        "schema": VECTORS_SCHEMA,
        "vectors": {value: {"layer": e.layer, "residual_norm": e.residual_norm} for value, e in entries.items()},
    }
    (folder / VECTORS_CARD).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def load_vectors(folder: Path, *, hidden_size: int, num_layers: int, fingerprint: str | None = None) -> VectorSet:
    """Read a bundle's steering vectors, checking the card, every shape, every number and the model.

    Raises ``ConfigError`` naming the file and field: a missing or unreadable file, another model's
    fingerprint, a tensor of the wrong shape, a non-finite or zero vector, a layer the model lacks, a
    norm that is not a positive finite number, a value in one file but not the other."""
    card_path, tensor_path = folder / VECTORS_CARD, folder / VECTORS_FILE
    for path in (card_path, tensor_path):
        if not path.is_file():
            raise ConfigError.single(str(path), "missing", hint="run 'causalguard levers vectors' to extract them")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ConfigError.single(
            str(card_path), f"not valid JSON ({type(exc).__name__})", hint="re-run 'causalguard levers vectors'"
        ) from None
    if not isinstance(card, dict) or card.get("schema") != VECTORS_SCHEMA:
        raise ConfigError.single(str(card_path), f"not a {VECTORS_SCHEMA} card", field="schema")
    if fingerprint is not None and card.get("model_fingerprint") != fingerprint:
        raise ConfigError.single(
            str(card_path),
            f"extracted on model {card.get('model_fingerprint')!r}, this model is {fingerprint!r}",
            field="model_fingerprint",
            hint="extract vectors for this model ('causalguard levers vectors')",
        )
    listed = card.get("vectors")
    if not isinstance(listed, dict) or not listed:
        raise ConfigError.single(str(card_path), "no vectors listed", field="vectors")
    try:
        from safetensors.torch import load_file

        tensors = load_file(str(tensor_path))
    except Exception as exc:  # safetensors raises its own errors on a damaged file
        raise ConfigError.single(
            str(tensor_path),
            f"unreadable safetensors file ({type(exc).__name__})",
            hint="re-run 'causalguard levers vectors'",
        ) from None
    if set(tensors) != set(listed):
        raise ConfigError.single(
            str(tensor_path), f"holds {sorted(tensors)} but the card lists {sorted(listed)}", field="vectors"
        )
    entries = {}
    for value, info in listed.items():
        where = f"vectors.{value}"
        tensor = tensors[value]
        if tuple(tensor.shape) != (hidden_size,):
            raise ConfigError.single(
                str(tensor_path), f"shape {tuple(tensor.shape)}, the model's hidden size is {hidden_size}", field=value
            )
        if not bool(torch.isfinite(tensor).all()) or float(tensor.norm()) == 0.0:
            raise ConfigError.single(str(tensor_path), "not a finite, non-zero vector", field=value)
        layer, norm = (info.get("layer"), info.get("residual_norm")) if isinstance(info, dict) else (None, None)
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < num_layers:
            raise ConfigError.single(
                str(card_path), f"layer {layer!r} is not one of the model's {num_layers} layers", field=f"{where}.layer"
            )
        if isinstance(norm, bool) or not isinstance(norm, int | float) or not (math.isfinite(norm) and norm > 0):
            raise ConfigError.single(
                str(card_path),
                f"residual_norm {norm!r} is not a positive finite number",
                field=f"{where}.residual_norm",
            )
        entries[value] = VectorEntry(value, layer, (tensor / tensor.norm()).to(torch.float32), float(norm))
    return VectorSet(folder, card, entries)
