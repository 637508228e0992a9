"""Train a standard (ReLU + L1) SAE with sae-lens on one decoder layer's output of a plain HF model.

The model runs over the corpus once: a forward hook on ``model.layers.N`` caches the residual stream
(no TransformerLens conversion). sae-lens's ``SAETrainer`` then trains on shuffled batches of the
cache, epoch after epoch: on CPU the model's forward pass is the bottleneck (sae-lens's own runner,
which reruns the model for every batch, reached ~500 tokens/s here), so caching trains on many times
more samples in the same time. Each text's first token is left out: it is an attention sink whose
residual norm is ~50x the others' (measured on SmolLM2, layer 24), and left in, most decoder
directions collapse onto its two outlier dimensions.

The SAE is written in sae-lens's inference format (``cfg.json`` + ``sae_weights.safetensors``) in
float16; ``causalguard.adapters.hf.load_sae`` and sae-lens's ``SAE.load_from_disk`` read it back.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from causalguard.artifacts import SAE_CONFIG, SAE_WEIGHTS
from causalguard.models.loaded import LoadedModel


@dataclass(frozen=True)
class SaeTrainSettings:
    layer: int
    d_sae: int = 4096
    l1_coefficient: float = 5.0
    training_tokens: int = 2_000_000  # samples drawn from the cache (the corpus is cycled)
    context_size: int = 128  # tokens per text seen by the model
    lr: float = 4e-4
    train_batch_size_tokens: int = 1024
    seed: int = 0

    @property
    def hook_name(self) -> str:
        return f"model.layers.{self.layer}"


def cache_activations(
    lm: LoadedModel, texts: Sequence[str], layer: int, *, context_size: int, batch_size: int = 8
) -> torch.Tensor:
    """The residual stream after ``layer`` for every token but each text's first: (tokens, d_in)."""
    from causalguard.adapters.hf.hooks import replaced_layer_output

    captured: list[torch.Tensor] = []
    chunks: list[torch.Tensor] = []

    def capture(hidden: torch.Tensor) -> torch.Tensor:
        captured.append(hidden.detach())
        return hidden

    tokenizer = lm.tokenizer
    tokenizer.padding_side = "right"
    with torch.inference_mode(), replaced_layer_output(lm.model, layer, capture):
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(
                list(texts[start : start + batch_size]),
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=context_size,
                add_special_tokens=False,
            )
            captured.clear()
            lm.model(input_ids=enc.input_ids, attention_mask=enc.attention_mask)
            keep = enc.attention_mask.bool().clone()
            keep[:, 0] = False
            chunks.append(captured[0][keep].float())
    return torch.cat(chunks)


def _batches(cache: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(cache.shape[0], generator=generator)
        for start in range(0, cache.shape[0] - batch_size + 1, batch_size):
            yield cache[order[start : start + batch_size]]


def train_sae(lm: LoadedModel, texts: Sequence[str], settings: SaeTrainSettings, out_dir: Path) -> Path:
    """Train on ``texts`` and write the float16 SAE folder to ``out_dir``; returns ``out_dir``."""
    from sae_lens import LoggingConfig, StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(settings.seed)
    cache = cache_activations(lm, texts, settings.layer, context_size=settings.context_size)
    batch = min(settings.train_batch_size_tokens, cache.shape[0])
    steps = max(1, settings.training_tokens // batch)
    sae: Any = StandardTrainingSAE(
        StandardTrainingSAEConfig(
            d_in=lm.hidden_size,
            d_sae=settings.d_sae,
            l1_coefficient=settings.l1_coefficient,
            normalize_activations="expected_average_only_in",
            l1_warm_up_steps=max(1, steps // 10),
        )
    )
    trainer: Any = SAETrainer(
        cfg=SAETrainerConfig(
            total_training_samples=steps * batch,
            train_batch_size_samples=batch,
            lr=settings.lr,
            lr_warm_up_steps=max(1, steps // 20),
            lr_decay_steps=max(1, steps // 5),
            lr_end=settings.lr / 10,
            dead_feature_window=max(10, steps // 4),
            feature_sampling_window=max(10, steps // 4),
            n_batches_for_norm_estimate=min(100, max(1, cache.shape[0] // batch)),
            logger=LoggingConfig(log_to_wandb=False),
            device="cpu",
        ),
        sae=sae,
        data_provider=_batches(cache, batch, settings.seed),
    )
    trained = trainer.fit()
    trained.cfg.metadata.hook_name = settings.hook_name
    trained.cfg.metadata.model_name = lm.name
    trained.cfg.metadata.context_size = settings.context_size
    with tempfile.TemporaryDirectory() as scratch:
        trained.save_inference_model(scratch)
        _write_float16(Path(scratch), out_dir)
    (out_dir / "training.json").write_text(
        json.dumps({**asdict(settings), "cached_tokens": int(cache.shape[0]), "steps": steps}, indent=2)
    )
    return out_dir


def _write_float16(source: Path, out_dir: Path) -> None:
    from safetensors.torch import load_file, save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    weights = load_file(str(source / SAE_WEIGHTS))
    save_file({k: v.to(torch.float16).contiguous() for k, v in weights.items()}, str(out_dir / SAE_WEIGHTS))
    cfg = json.loads((source / SAE_CONFIG).read_text())
    cfg["dtype"] = "float16"
    (out_dir / SAE_CONFIG).write_text(json.dumps(cfg, indent=2))
