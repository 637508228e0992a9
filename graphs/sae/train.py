"""Train a standard (ReLU + L1) SAE with sae-lens on one decoder layer's output of a plain HF model.

sae-lens collects activations through ``HookedProxyLM`` (a forward hook on the module path
``model.layers.N``), so no TransformerLens conversion is needed. The trained SAE is written in
sae-lens's inference format (``cfg.json`` + ``sae_weights.safetensors``) in float16, which
``causalguard.adapters.hf.load_sae`` (and sae-lens's ``SAE.load_from_disk``) read back.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from causalguard.models.loaded import LoadedModel


@dataclass(frozen=True)
class SaeTrainSettings:
    layer: int
    d_sae: int = 4096
    l1_coefficient: float = 5.0
    training_tokens: int = 300_000
    context_size: int = 128
    lr: float = 4e-4
    train_batch_size_tokens: int = 1024
    store_batch_size_prompts: int = 16
    n_batches_in_buffer: int = 16
    seed: int = 0

    @property
    def hook_name(self) -> str:
        return f"model.layers.{self.layer}"


def train_sae(lm: LoadedModel, texts: Sequence[str], settings: SaeTrainSettings, out_dir: Path) -> Path:
    """Train on ``texts`` and write the float16 SAE folder to ``out_dir``; returns ``out_dir``."""
    import torch
    from datasets import Dataset
    from sae_lens import (
        LanguageModelSAERunnerConfig,
        LanguageModelSAETrainingRunner,
        LoggingConfig,
        StandardTrainingSAEConfig,
    )
    from sae_lens.load_model import HookedProxyLM

    torch.manual_seed(settings.seed)
    steps = settings.training_tokens // settings.train_batch_size_tokens
    with tempfile.TemporaryDirectory() as scratch:
        cfg: Any = LanguageModelSAERunnerConfig(
            sae=StandardTrainingSAEConfig(
                d_in=lm.hidden_size, d_sae=settings.d_sae, l1_coefficient=settings.l1_coefficient,
                normalize_activations="expected_average_only_in", l1_warm_up_steps=max(1, steps // 10),
            ),
            model_name=lm.name,
            model_class_name="AutoModelForCausalLM",
            hook_name=settings.hook_name,
            dataset_path="causalguard-corpus",
            is_dataset_tokenized=False,
            streaming=False,
            context_size=settings.context_size,
            training_tokens=settings.training_tokens,
            train_batch_size_tokens=settings.train_batch_size_tokens,
            store_batch_size_prompts=settings.store_batch_size_prompts,
            n_batches_in_buffer=settings.n_batches_in_buffer,
            n_batches_for_norm_estimate=20,  # the default 1000 takes ~25 min on 2 CPU cores
            # Position 0 of every context window is an attention sink whose residual norm is ~50x the
            # others' (measured on SmolLM2, layer 24): left in, it dominates the MSE and most decoder
            # directions collapse onto its two outlier dimensions.
            seqpos_slice=(1, None),
            lr=settings.lr,
            lr_warm_up_steps=max(1, steps // 20),
            lr_decay_steps=max(1, steps // 5),
            feature_sampling_window=max(10, steps // 4),
            dead_feature_window=max(10, steps // 4),
            n_eval_batches=1,
            eval_batch_size_prompts=4,
            device="cpu",
            act_store_device="cpu",
            seed=settings.seed,
            logger=LoggingConfig(log_to_wandb=False),
            checkpoint_path=str(Path(scratch) / "checkpoints"),
            n_checkpoints=0,
            output_path=str(Path(scratch) / "final"),
            verbose=False,
        )
        proxy = HookedProxyLM(lm.model, lm.tokenizer, hook_names=[settings.hook_name])
        dataset = Dataset.from_dict({"text": list(texts)})
        LanguageModelSAETrainingRunner(cfg, override_dataset=dataset, override_model=proxy).run()
        _write_float16(Path(scratch) / "final", out_dir)
    (out_dir / "training.json").write_text(json.dumps(asdict(settings), indent=2))
    return out_dir


def _write_float16(source: Path, out_dir: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    weights = load_file(str(source / "sae_weights.safetensors"))
    save_file({k: v.to(torch.float16).contiguous() for k, v in weights.items()},
              str(out_dir / "sae_weights.safetensors"))
    cfg = json.loads((source / "cfg.json").read_text())
    cfg["dtype"] = "float16"
    (out_dir / "cfg.json").write_text(json.dumps(cfg, indent=2))
    sparsity = source / "sparsity.safetensors"
    if sparsity.exists():
        shutil.copy(sparsity, out_dir / "sparsity.safetensors")
