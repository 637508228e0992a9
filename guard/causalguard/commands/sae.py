"""``causalguard sae``: train and inspect sparse autoencoders for a model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

sae_app = typer.Typer(
    help="Sparse autoencoders: train one for a model, evaluate one from a folder.", no_args_is_help=True
)


@sae_app.command("train")
def sae_train_command(
    out: Annotated[Path, typer.Option(help="Folder for the SAE (cfg.json, sae_weights.safetensors, SAE_CARD.md).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Registry name, folder, .gguf or HF id.")] = (
        "smollm2-135m-instruct"
    ),
    inventory: Annotated[str, typer.Option(help="Inventory whose roles and items seed the corpus.")] = (
        "schwartz-basic-10"
    ),
    work: Annotated[Path | None, typer.Option(help="Work folder; default OUT/../.sae-work")] = None,
    layer: Annotated[int | None, typer.Option(min=0, help="Decoder layer; default: chosen by measurement.")] = None,
    d_sae: Annotated[int, typer.Option(min=16, help="Number of SAE features.")] = 4096,
    l1: Annotated[float, typer.Option(min=0.0, help="L1 sparsity coefficient.")] = 5.0,
    tokens: Annotated[int, typer.Option(min=1024, help="Training samples drawn from the cached corpus.")] = 2_000_000,
    generated: Annotated[int, typer.Option(min=0, help="Sampled model answers added to the corpus.")] = 320,
) -> None:
    """Choose a layer, build a corpus with the model itself, train with sae-lens, evaluate, write the card."""
    from causalguard.graphs.sae.build import SaeBuildSettings, build_sae
    from causalguard.graphs.sae.train import SaeTrainSettings
    from causalguard.models import load_model
    from causalguard.values import load_inventory

    lm = load_model(model)
    if layer is not None and layer >= lm.num_layers:
        raise typer.BadParameter(
            f"{lm.name} has {lm.num_layers} decoder layers (0 to {lm.num_layers - 1}); got {layer}",
            param_hint="--layer",
        )
    settings = SaeBuildSettings(layer=layer, generated=generated)
    settings = replace(
        settings, train=SaeTrainSettings(layer=-1, d_sae=d_sae, l1_coefficient=l1, training_tokens=tokens)
    )
    report = build_sae(lm, load_inventory(inventory), out, work or out.parent / ".sae-work", settings)
    m = report["metrics"]
    typer.echo(
        f"layer {report['layer']}: L0 {m['l0']:.1f}, explained variance {m['explained_variance']:.3f}, "
        f"CE loss recovered {m['ce_loss_recovered']:.3f}, dead {m['dead_fraction']:.1%}"
    )
    typer.echo(f"wrote {out}")


@sae_app.command("eval")
def sae_eval_command(
    folder: Annotated[Path, typer.Argument(help="SAE folder in sae-lens format.")],
    corpus: Annotated[Path, typer.Option(help="corpus.jsonl to evaluate on (e.g. the work folder's).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Registry name, folder, .gguf or HF id.")] = (
        "smollm2-135m-instruct"
    ),
    texts: Annotated[int, typer.Option(min=1, help="Texts to evaluate on.")] = 64,
) -> None:
    """Print L0, explained variance, CE loss recovered and dead features of an SAE on a corpus."""
    from causalguard.adapters.hf.sae import load_sae
    from causalguard.graphs.sae.corpus import read_corpus
    from causalguard.graphs.sae.evaluate import sae_metrics
    from causalguard.models import load_model

    lm = load_model(model)
    metrics = sae_metrics(lm, load_sae(folder, lm), [c.text for c in read_corpus(corpus)[:texts]])
    for key, value in metrics.items():
        typer.echo(f"{key}: {value:.4f}")
