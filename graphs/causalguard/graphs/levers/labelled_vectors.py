"""Steering vectors from the labelled replies: a second extraction of each value's direction.

The first extraction (``vectors.py``) contrasts the model's own replies under inclined and disinclined
wordings, which a 135M model barely tells apart (split-half AUROC about 0.6). This one reads the
labelled replies' **dev half** (per value, high-pole replies and low-pole replies on the same
situations, written to differ in the value) back through the model as an assistant's reply to a plain
question, and takes the mean high-minus-low residual over the reply's tokens (DiffMean, as AxBench's
baseline) at the layer the first extraction chose for the value, in that layer's unit (its median
residual norm). The directions are stored beside the first ones in the bundle's ``vectors/`` as
``<value>.labelled``; their levers' ids end in ``:labelled``.

The bundle's probe judge was fitted on the same dev half, so these vectors point where that judge
reads: its estimate of their effects may run high, and a judge that did not learn from these texts (the
likelihood-contrast judge) must agree before a lever counts. The test half is never read here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from causalguard.adapters.hf.vectors import VectorEntry, load_vectors, save_vectors
from causalguard.bundle.integrity import seal_bundle
from causalguard.errors import ConfigError
from causalguard.graphs.levers.vectors import reply_token_means
from causalguard.judging.labelled import LabelledText
from causalguard.models.loaded import LoadedModel
from causalguard.models.prompting import encode_continuation
from causalguard.runtime.generation import chat_prompt_ids

LABELLED_SOURCE = "labelled"
READ_BACK_QUESTION = "Can you give me some advice?"
READ_BACK_SYSTEM = "You are a helpful assistant."


def labelled_key(value: str) -> str:
    """The key of ``value``'s labelled direction in the bundle's vectors."""
    return f"{value}.{LABELLED_SOURCE}"


def labelled_directions(
    lm: LoadedModel,
    texts: Sequence[LabelledText],
    layers: dict[str, int],
    *,
    batch_size: int = 16,
) -> dict[str, np.ndarray]:
    """Per value of ``layers`` (value -> layer), the unit mean high-minus-low residual of the labelled
    **dev** texts over their tokens, read as the assistant's reply. Raises ``ValueError`` when a value has
    no dev text of one pole."""
    context = chat_prompt_ids(lm, [{"role": "user", "content": READ_BACK_QUESTION}], READ_BACK_SYSTEM, [])
    out = {}
    for value, layer in layers.items():
        high = [t.text for t in texts if t.split == "dev" and t.value == value and t.pole == "high"]
        low = [t.text for t in texts if t.split == "dev" and t.value == value and t.pole == "low"]
        if not high or not low:
            raise ValueError(f"the labelled dev half has no {'high' if not high else 'low'}-pole text for {value}")
        replies = [encode_continuation(lm.tokenizer, x) for x in high + low]
        means, _ = reply_token_means(lm, [context] * len(replies), replies, [layer], batch_size=batch_size)
        difference = means[: len(high), 0].mean(0) - means[len(high) :, 0].mean(0)
        out[value] = difference / np.linalg.norm(difference)
    return out


def add_labelled_vectors(
    lm: LoadedModel, folder: Path, texts: Sequence[LabelledText], log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Add ``<value>.labelled`` beside every value's direction in the vectors folder ``folder`` (replacing
    earlier labelled ones), at the same layer and unit; reseal the bundle; return the card's new section."""
    shipped = load_vectors(folder, hidden_size=lm.hidden_size, num_layers=lm.num_layers, fingerprint=lm.fingerprint)
    first = {k: e for k, e in shipped.entries.items() if "." not in k}
    if not first:
        raise ConfigError.single(
            str(folder), "no value's vector to take the layer and unit from", hint="run 'causalguard levers vectors'"
        )
    directions = labelled_directions(lm, texts, {v: e.layer for v, e in first.items()})
    entries = {k: e for k, e in shipped.entries.items() if not k.endswith(f".{LABELLED_SOURCE}")}
    per_value = {}
    for value, unit in directions.items():
        entry = first[value]
        entries[labelled_key(value)] = VectorEntry(
            labelled_key(value), entry.layer, torch.from_numpy(unit.astype(np.float32)), entry.residual_norm
        )
        cosine = float(unit @ entry.direction.numpy())
        per_value[value] = {
            "layer": entry.layer,
            "texts": sum(1 for t in texts if t.split == "dev" and t.value == value),
            "cosine_with_replies_direction": round(cosine, 4),
        }
        log(f"  {value}: layer {entry.layer}, cosine with the replies' direction {cosine:+.3f}")
    section = {
        "method": "mean difference of reply-token residuals, labelled high-pole minus low-pole replies (dev half), "
        "read back as the assistant's reply to a plain question",
        "read_back": {"system": READ_BACK_SYSTEM, "user": READ_BACK_QUESTION},
        "split": "dev",
        "per_value": per_value,
    }
    card = {k: v for k, v in shipped.card.items() if k not in ("schema", "vectors")}
    save_vectors(folder, entries, {**card, "labelled_extraction": section})
    seal_bundle(folder.parent)
    return section
