"""Extract steering vectors from the model's own replies (CAA / persona vectors, on dev prompts only).

Per value:

1. replies to dev prompts under the inclined and the disinclined reply-style wording (the same
   prompt and persona for both: a pair), generated the way the guard serves them and checkpointed;
2. pairs kept where the reply judge agrees with the poles (the inclined reply scores higher on the
   value than the disinclined one);
3. each kept reply is read back *without* the wording (the persona's plain conversation followed by
   the reply's tokens) and the residual stream is averaged over the reply's tokens at every candidate
   layer, so the direction describes what the reply says, not the instruction that asked for it;
4. the direction at a layer is the mean inclined-minus-disinclined difference; the layer is chosen on
   dev data by split halves (directions from half of the prompts, AUROC of the projection separating
   the other half's inclined from disinclined replies), among mid-depth layers (35-70% of depth, where
   CAA and persona vectors steer);
5. the unit is the layer's median residual-stream norm over the replies' tokens.

Nothing here reads test prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from causalguard.adapters.hf.hooks import steer
from causalguard.adapters.hf.vectors import VECTORS_CARD, VectorEntry, load_vectors, save_vectors
from causalguard.bundle.integrity import seal_bundle
from causalguard.graphs.behaviour.replies import Persona, ReplyCondition, ReplySettings, ReplyStore, run_replies
from causalguard.graphs.behaviour.reply_backends import ReplyBackend
from causalguard.graphs.levers.variants import REPLY_STYLE_WORDINGS
from causalguard.judging.judge import ValueJudge, read_layers
from causalguard.judging.prompt_sets import Prompt
from causalguard.models.batching import left_padded
from causalguard.models.loaded import LoadedModel
from causalguard.runtime.generation import chat_prompt_ids


@dataclass(frozen=True)
class VectorSettings:
    min_depth: float = 0.35
    max_depth: float = 0.70
    layer_step: int = 1
    replies: ReplySettings = field(default_factory=ReplySettings)
    batch_size: int = 16


def candidate_layers(num_layers: int, settings: VectorSettings) -> list[int]:
    """Mid-depth layers the direction may be read and added at."""
    low, high = round(settings.min_depth * num_layers), round(settings.max_depth * num_layers)
    return list(range(max(low, 0), min(high, num_layers - 1) + 1, settings.layer_step))


def reply_token_means(
    lm: LoadedModel,
    contexts: Sequence[Sequence[int]],
    replies: Sequence[Sequence[int]],
    layers: Sequence[int],
    *,
    batch_size: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean residual stream over each reply's tokens after its context, per layer: ``[rows, layers, hidden]``,
    and the median per-token norm of those states per layer (``[layers]``)."""
    out = np.zeros((len(replies), len(layers), lm.hidden_size), dtype=np.float32)
    norms: list[list[np.ndarray]] = [[] for _ in layers]
    with torch.inference_mode(), steer(None), read_layers(lm.model, layers) as seen:
        for start in range(0, len(replies), batch_size):
            chunk = range(start, min(start + batch_size, len(replies)))
            rows = [list(contexts[i]) + list(replies[i]) for i in chunk]
            ids, mask = left_padded(rows, lm.pad_token_id)
            positions = (mask.cumsum(1) - 1).clamp(min=0)
            lm.model(input_ids=ids, attention_mask=mask, position_ids=positions)
            for k, layer in enumerate(layers):
                hidden = seen[layer].float()
                for row, i in enumerate(chunk):
                    states = hidden[row, hidden.shape[1] - len(replies[i]) :]  # right-aligned: the reply's tokens
                    out[i, k] = states.mean(0).numpy()
                    norms[k].append(states.norm(dim=-1).numpy())
    return out, np.asarray([float(np.median(np.concatenate(n))) for n in norms], dtype=np.float32)


def _auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([positive, negative]))
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def choose_layer(pos: np.ndarray, neg: np.ndarray, halves: np.ndarray) -> tuple[int, list[float]]:
    """The candidate layer (index into axis 1) whose split-half direction separates the other half best.

    ``pos``/``neg``: ``[pairs, layers, hidden]``; ``halves``: 0/1 per pair (by prompt)."""
    scores = []
    for k in range(pos.shape[1]):
        aurocs = []
        for fit in (0, 1):
            a, b = halves == fit, halves != fit
            if not a.any() or not b.any():
                continue
            direction = pos[a, k].mean(0) - neg[a, k].mean(0)
            aurocs.append(_auroc(pos[b, k] @ direction, neg[b, k] @ direction))
        scores.append(float(np.mean(aurocs)) if aurocs else 0.5)
    middle = (pos.shape[1] - 1) / 2
    best = max(range(len(scores)), key=lambda k: (round(scores[k], 3), -abs(k - middle)))
    return best, scores


def _other_sources(folder: Path, lm: LoadedModel) -> dict[str, VectorEntry]:
    """The directions of other extractions (keys ``<value>.<source>``) already in ``folder``: kept when the
    replies' directions are extracted again."""
    if not (folder / VECTORS_CARD).is_file():
        return {}
    held = load_vectors(folder, hidden_size=lm.hidden_size, num_layers=lm.num_layers, fingerprint=lm.fingerprint)
    return {k: e for k, e in held.entries.items() if "." in k}


def extract_vectors(
    lm: LoadedModel,
    judge: ValueJudge,
    dims: Sequence[str],
    prompts: Sequence[Prompt],
    personas: Sequence[Persona],
    work: Path,
    out: Path,
    settings: VectorSettings,
    *,
    restart: bool = False,
    log: Callable[[str], None] = print,
    backend: ReplyBackend | None = None,
) -> dict[str, Any]:
    """Extract one direction per value (see the module docstring) into ``out`` (``vectors/``); returns the card."""
    missing = [d for d in dims if d not in REPLY_STYLE_WORDINGS]
    if missing:
        raise ValueError(
            f"no reply-style wordings for {', '.join(missing)}: vectors need an inclined and a "
            "disinclined wording per value"
        )
    if any(p.split != "dev" for p in prompts):
        raise ValueError("steering vectors are extracted on dev prompts only")
    conditions = [
        ReplyCondition(f"vector-source:{d}:{sign}", (REPLY_STYLE_WORDINGS[d][k],))
        for d in dims
        for k, sign in ((0, "+"), (1, "-"))
    ]
    identity = {
        "model": lm.fingerprint,
        "settings": asdict(settings.replies),
        "prompts": [p.id for p in prompts],
        "personas": [asdict(p) for p in personas],
        "batch_size": settings.batch_size,
        "kind": "vectors",
    }
    store = ReplyStore(work, identity, restart=restart)
    log(f"vector source replies: {len(conditions)} wordings x {len(personas)} personas x {len(prompts)} prompts")
    replies = run_replies(
        lm,
        conditions,
        personas,
        prompts,
        settings.replies,
        store,
        batch_size=settings.batch_size,
        progress=lambda done, total: log(f"  {done}/{total} replies"),
        backend=backend,
    )
    layers = candidate_layers(lm.num_layers, settings)
    pairs = [(p, q) for p in personas for q in prompts]
    halves = np.asarray([int(q.id in {x.id for x in prompts[1::2]}) for _, q in pairs])
    entries, report = {}, {}
    for d in dims:
        pos_text = [replies[(f"vector-source:{d}:+", p.id, q.id)].text for p, q in pairs]
        neg_text = [replies[(f"vector-source:{d}:-", p.id, q.id)].text for p, q in pairs]
        k = list(dims).index(d)
        pos_scores, neg_scores = judge.score(pos_text)[:, k], judge.score(neg_text)[:, k]
        keep = np.asarray([a > b for a, b in zip(pos_scores, neg_scores, strict=True)])
        if keep.sum() < 4:
            raise ValueError(
                f"{d}: only {int(keep.sum())} of {len(pairs)} reply pairs agree with the poles; "
                "a direction needs at least 4 (more prompts or personas)"
            )
        contexts = [chat_prompt_ids(lm, q.messages(), p.system_prompt, []) for p, q in pairs]
        kept = [i for i in range(len(pairs)) if keep[i]]

        def tokens(texts: list[str]) -> list[list[int]]:
            return [
                list(lm.tokenizer(t or " ", add_special_tokens=False).input_ids) or [lm.pad_token_id] for t in texts
            ]

        pos_acts, pos_norms = reply_token_means(
            lm, [contexts[i] for i in kept], tokens([pos_text[i] for i in kept]), layers, batch_size=settings.batch_size
        )
        neg_acts, neg_norms = reply_token_means(
            lm, [contexts[i] for i in kept], tokens([neg_text[i] for i in kept]), layers, batch_size=settings.batch_size
        )
        best, separation = choose_layer(pos_acts, neg_acts, halves[kept])
        direction = pos_acts[:, best].mean(0) - neg_acts[:, best].mean(0)
        norm = float((pos_norms[best] + neg_norms[best]) / 2)
        entries[d] = VectorEntry(d, layers[best], torch.from_numpy(direction / np.linalg.norm(direction)), norm)
        report[d] = {
            "layer": layers[best],
            "pairs": len(pairs),
            "pairs_kept": len(kept),
            "raw_difference_norm": float(np.linalg.norm(direction)),
            "residual_norm": norm,
            "split_half_auroc": {str(layer): round(s, 4) for layer, s in zip(layers, separation, strict=True)},
        }
        log(
            f"  {d}: layer {layers[best]} (split-half AUROC {separation[best]:.3f}), {len(kept)}/{len(pairs)} pairs, "
            f"|diff| {np.linalg.norm(direction):.2f} vs median norm {norm:.2f}"
        )
    card = {
        "model_fingerprint": lm.fingerprint,
        "model": lm.name,
        "hidden_size": lm.hidden_size,
        "extraction": {
            "method": "mean difference of reply-token residuals, inclined minus disinclined "
            "reply-style wording, read back without the wording",
            "prompts": [p.id for p in prompts],
            "prompt_split": "dev",
            "personas": [asdict(p) for p in personas],
            "replies": asdict(settings.replies),
            "candidate_layers": layers,
            "judge_filter": "inclined reply scores higher on the value",
        },
        "per_value": report,
    }
    save_vectors(out, {**_other_sources(out, lm), **entries}, card)
    seal_bundle(out.parent)  # the vectors live in their bundle's vectors/ folder
    return card
