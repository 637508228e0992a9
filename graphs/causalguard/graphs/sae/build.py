"""``causalguard sae train``: choose the layer, build the corpus, train, evaluate, write the SAE card.

Steps keep their results in the work folder (``layers.json``, ``corpus.jsonl``), so a rerun after an
interruption skips finished steps; training itself restarts (a few minutes on CPU).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from causalguard.adapters.hf.sae import load_sae
from causalguard.bundle.integrity import seal_bundle
from causalguard.graphs.sae.corpus import generated_texts, read_corpus, survey_texts, write_corpus
from causalguard.graphs.sae.evaluate import sae_metrics
from causalguard.graphs.sae.layer_choice import layer_separation
from causalguard.graphs.sae.train import SaeTrainSettings, train_sae
from causalguard.graphs.survey.conditions import standard_roles
from causalguard.models.loaded import LoadedModel
from causalguard.values.inventory import Inventory

CARD = "SAE_CARD.md"


@dataclass(frozen=True)
class SaeBuildSettings:
    layer: int | None = None  # None: choose by measurement among ``candidate_layers``
    candidate_layers: tuple[int, ...] = ()
    generated: int = 320
    max_new_tokens: int = 96
    personas: int = 20
    held_out_fraction: float = 0.1
    train: SaeTrainSettings = field(default_factory=lambda: SaeTrainSettings(layer=-1))


def build_sae(
    lm: LoadedModel, inventory: Inventory, out_dir: Path, work_dir: Path, settings: SaeBuildSettings
) -> dict[str, Any]:
    work_dir.mkdir(parents=True, exist_ok=True)
    layers_file = work_dir / "layers.json"
    candidates = settings.candidate_layers or tuple(range(lm.num_layers // 5, 4 * lm.num_layers // 5 + 1, 3))
    if settings.layer is not None:
        layer, separation = settings.layer, {}
    else:
        if layers_file.exists():
            separation = {int(k): v for k, v in json.loads(layers_file.read_text()).items()}
        else:
            separation = layer_separation(lm, inventory, candidates)
            layers_file.write_text(json.dumps(separation, indent=2))
        layer = max(separation, key=lambda k: separation[k])

    corpus_file = work_dir / "corpus.jsonl"
    if not corpus_file.exists():
        roles = standard_roles(inventory, personas=settings.personas, include_anchors=True)
        texts = survey_texts(lm, inventory, roles, seed=0)
        texts += generated_texts(lm, roles, count=settings.generated, max_new_tokens=settings.max_new_tokens, seed=0)
        write_corpus(corpus_file, texts)
    corpus = read_corpus(corpus_file)
    order = list(range(len(corpus)))
    random.Random(0).shuffle(order)
    n_eval = max(8, int(len(corpus) * settings.held_out_fraction))
    eval_texts = [corpus[i].text for i in order[:n_eval]]
    train_texts = [corpus[i].text for i in order[n_eval:]]

    train_settings = replace(settings.train, layer=layer)
    started = time.perf_counter()
    train_sae(lm, train_texts, train_settings, out_dir)
    seconds = time.perf_counter() - started
    metrics = sae_metrics(lm, load_sae(out_dir, lm), eval_texts)
    tokens = sum(len(lm.tokenizer(t, add_special_tokens=False).input_ids) for t in train_texts)
    report: dict[str, Any] = {
        "model": {"name": lm.name, "fingerprint": lm.fingerprint},
        "layer": layer,
        "hook_name": train_settings.hook_name,
        "layer_separation": {str(k): round(v, 3) for k, v in separation.items()},
        "corpus": {
            "texts": len(corpus),
            "train_texts": len(train_texts),
            "eval_texts": len(eval_texts),
            "train_tokens_unique": tokens,
            "by_source": {s: sum(1 for c in corpus if c.source == s) for s in ("survey", "generated")},
        },
        "training": {**asdict(train_settings), "seconds": round(seconds, 1)},
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
    }
    (out_dir / "evaluation.json").write_text(json.dumps(report, indent=2))
    (out_dir / CARD).write_text(render_card(report))
    seal_bundle(out_dir.parent)  # an SAE trained into its bundle's sae/ folder
    return report


def render_card(report: dict[str, Any]) -> str:
    m, c, t = report["metrics"], report["corpus"], report["training"]
    lines = [
        f"# SAE card: {report['model']['name']}, {report['hook_name']}",
        "",
        "A standard sparse autoencoder (ReLU, L1 penalty) trained with sae-lens's SAETrainer on the cached",
        f"residual stream after decoder layer {report['layer']} (each text's first token, an attention sink, left",
        "out), in sae-lens's on-disk format (float16).",
        "",
        "## Layer choice",
        "Held-out separation (median Cohen's d over dimensions) of inclined vs disinclined value roles:",
        "",
        "| layer | separation |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in report["layer_separation"].items()],
        "",
        "## Corpus",
        f"{c['texts']} texts ({c['by_source'].get('survey', 0)} survey contexts and chat questions under personas,",
        f"value roles and anchors; {c['by_source'].get('generated', 0)} of the model's own sampled chat answers to",
        f"diverse prompts). {c['train_texts']} for training ({c['train_tokens_unique']} distinct tokens, cycled),",
        f"{c['eval_texts']} held out for the figures below. No text was downloaded.",
        "",
        "## Training",
        f"d_sae {t['d_sae']}, L1 coefficient {t['l1_coefficient']}, {t['training_tokens']} training samples, context "
        f"{t['context_size']}, lr {t['lr']}; {t['seconds']} s on this machine's CPU.",
        "",
        "## Evaluation (held-out texts)",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in m.items()],
        "",
        "Definitions as in sae-lens: L0 = active features per token; explained variance = 1 - SSE/SST;",
        "CE loss recovered = (CE_zero - CE_sae) / (CE_zero - CE_clean) with the reconstruction spliced in.",
    ]
    return "\n".join(lines) + "\n"
