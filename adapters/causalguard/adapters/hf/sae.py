"""Loading SAEs in sae-lens's on-disk format (cfg.json + sae_weights.safetensors) for a given model."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from causalguard.artifacts import SAE_CONFIG
from causalguard.errors import ConfigError
from causalguard.models.loaded import LoadedModel

_HF_LAYER = re.compile(r"^(?:model\.)?(?:language_model\.)?layers\.(\d+)$")
_TL_RESID_POST = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")


def resolve_layer(hook_name: str, num_layers: int) -> int:
    """Decoder-layer index whose output is the SAE's input.

    Accepts HF module paths (``model.layers.15``) and TransformerLens names
    (``blocks.15.hook_resid_post``); both mean the residual stream after layer 15.
    """
    match = _HF_LAYER.match(hook_name) or _TL_RESID_POST.match(hook_name)
    if match is None:
        raise ValueError(f"unsupported hook point {hook_name!r}: use 'model.layers.N' or 'blocks.N.hook_resid_post'")
    layer = int(match.group(1))
    if not 0 <= layer < num_layers:
        raise ValueError(f"hook point {hook_name!r} names layer {layer}, but the model has {num_layers} layers")
    return layer


@dataclass(frozen=True)
class LoadedSae:
    """An sae-lens SAE bound to a decoder layer of a specific model."""

    sae: Any  # sae_lens.SAE
    layer: int
    hook_name: str
    d_in: int
    d_sae: int
    path: str

    def additive_value(self, feature: int, strength: float, residual_norm: float) -> float:
        """The ``add`` edit value that moves the residual stream by ``strength`` x ``residual_norm`` along
        the feature's decoder direction (lever strengths are in units of the layer's median norm)."""
        self.check_feature(feature)
        decoder_norm = float(self.sae.W_dec[feature].detach().float().norm())
        return strength * residual_norm / max(decoder_norm, 1e-8)

    def check_feature(self, feature: int) -> None:
        if not 0 <= feature < self.d_sae:
            raise ValueError(
                f"feature {feature} is out of range: the SAE has {self.d_sae} features (0 to {self.d_sae - 1})"
            )


def _read_sae_config(path: Path) -> dict[str, Any]:
    """cfg.json, checked for what loading needs: a JSON object with positive integer d_in and d_sae."""
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError.single(str(path), f"not valid JSON: {exc}", hint="copy the SAE folder again") from None
    if not isinstance(cfg, dict):
        raise ConfigError.single(str(path), "not a JSON object", hint="copy the SAE folder again")
    for key in ("d_in", "d_sae"):
        value = cfg.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError.single(
                str(path),
                f"{key} must be a positive integer, got {value!r}",
                field=key,
                hint="copy the SAE folder again",
            )
    return cfg


def load_sae(folder: Path, lm: LoadedModel, *, hook_name: str | None = None) -> LoadedSae:
    """Load an SAE folder and check it fits ``lm``: width equals the hooked layer's, hook point exists."""
    import torch
    from sae_lens import SAE

    cfg_path = folder / SAE_CONFIG
    if not cfg_path.exists():
        raise ConfigError.single(
            str(folder),
            "not an sae-lens SAE folder (no cfg.json)",
            hint="save SAEs with sae-lens's save_model(), or 'causalguard sae train'",
        )
    cfg = _read_sae_config(cfg_path)
    name = hook_name or (cfg.get("metadata") or {}).get("hook_name") or cfg.get("hook_name")
    if not name:
        raise ConfigError.single(
            str(cfg_path),
            "the SAE does not say which hook point it reads",
            field="metadata.hook_name",
            hint="pass hook_name='model.layers.N'",
        )
    try:
        layer = resolve_layer(str(name), lm.num_layers)
    except ValueError as exc:
        raise ConfigError.single(str(cfg_path), str(exc), field="metadata.hook_name") from None
    if int(cfg["d_in"]) != lm.hidden_size:
        raise ConfigError.single(
            str(cfg_path),
            f"SAE width d_in={cfg['d_in']} does not match the model's hidden size {lm.hidden_size}",
            field="d_in",
            hint="use an SAE trained on this model",
        )
    try:
        sae = SAE.load_from_disk(folder, device="cpu", dtype="float32")  # fp16 on disk; fp32 math on CPU
    except Exception as exc:  # safetensors and torch raise their own types for truncated or foreign files
        raise ConfigError.single(
            str(folder / "sae_weights.safetensors"),
            f"cannot read the SAE weights: {exc}",
            hint="the file is damaged or incomplete: copy the SAE folder again or retrain it ('causalguard sae train')",
        ) from None
    expected = (int(cfg["d_in"]), int(cfg["d_sae"]))
    finite = bool(torch.isfinite(sae.W_enc).all() & torch.isfinite(sae.W_dec).all())
    if tuple(sae.W_enc.shape) != expected or not finite:
        raise ConfigError.single(
            str(folder / "sae_weights.safetensors"),
            f"W_enc is {tuple(sae.W_enc.shape)} (cfg.json says {expected}) or holds NaN/inf",
            hint="the weights do not belong to this cfg.json: copy the SAE folder again",
        )
    sae.eval()
    return LoadedSae(
        sae=sae, layer=layer, hook_name=str(name), d_in=int(cfg["d_in"]), d_sae=int(cfg["d_sae"]), path=str(folder)
    )
