"""``causalguard behaviour reply-matrix``: an interventional score matrix of what the chatbot says.

The survey graph's rows are likelihood-survey scores. This builds the same kind of matrix from replies:
one row per persona x condition (``none`` or a catalog lever, applied as the guard applies it), whose
value columns are the bundle's reply judge averaged over that persona's replies to the dev prompts. It
is written in our interventional format (``condition`` = ``persona|lever``, ``role_kind``, ``steering``
= the lever id or ``none``), which ``graph build --replies`` and ``graph evaluate --replies`` read (its
own unsteered rows are the observational ones).

Personas come from their own seed (no other run uses it), prompts from a slice of the dev split that
the behaviour report and the confirmation did not read (so the catalog's reply effects, measured there,
are a forecast for these rows, not a copy of them). Replies are checkpointed in the work folder
(``replies.jsonl``) and judge scores cached beside them: an interrupted run resumes where it stopped, and
a run with other personas, prompts or reply settings is refused in the same folder.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from causalguard.adapters.hf.sae import load_sae
from causalguard.adapters.hf.vectors import load_vectors
from causalguard.bundle.catalog import VECTOR_KINDS, LeverEntry
from causalguard.bundle.format import load_bundle
from causalguard.errors import ConfigError
from causalguard.graphs.behaviour.replies import ReplyCondition, ReplySettings, ReplyStore, run_steered_replies
from causalguard.graphs.behaviour.reply_backends import ReplyBackend
from causalguard.graphs.behaviour.report import bundle_adapters, lever_reply_condition, reply_personas
from causalguard.graphs.behaviour.score_cache import cached_scores
from causalguard.judging.judge import load_probe_judge
from causalguard.judging.prompt_sets import load_prompts
from causalguard.models.loaded import LoadedModel

REPLY_MATRIX_FILE = "reply_interventions.csv"
UNSTEERED = "none"


@dataclass(frozen=True)
class ReplyMatrixSettings:
    prompts: int = 6  # dev prompts per persona and condition, balanced over values
    prompt_offset: int = 60  # past the behaviour report's (0-19) and confirmation's (20-59) dev prompts
    personas: int = 8  # the default assistant prompt, then generated personas
    persona_seed: int = 4000  # apart from the bundle's (0), the catalog's (1000), behaviour's (2000), tests' (3xxx)
    levers: str = r"(role|guided|vector):.*"  # catalog lever ids, a full-match regular expression
    replies: ReplySettings = field(default_factory=ReplySettings)
    batch_size: int = 16


def chosen_levers(levers: Sequence[LeverEntry], pattern: str) -> list[LeverEntry]:
    """The catalog levers whose id fully matches ``pattern`` and that have a target (SAE levers included
    only if the pattern asks for them). A pattern that is not a regular expression, or matches nothing,
    is a ConfigError naming ``--levers``."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigError.single(
            "--levers",
            f"not a regular expression: {exc}",
            field="--levers",
            hint=r"e.g. 'vector:.*:0\.15|guided:.*:g1\.5:.*'",
        ) from None
    out = [lever for lever in levers if lever.target and compiled.fullmatch(lever.id)]
    if not out:
        raise ConfigError.single(
            "--levers",
            f"no catalog lever with a target matches {pattern!r}",
            field="--levers",
            hint="see 'causalguard levers show BUNDLE' for the ids",
        )
    return out


def reply_rows(
    scores: Mapping[tuple[str, str, str], np.ndarray],
    conditions: Sequence[str],
    personas: Sequence[str],
    prompts: Sequence[str],
    dims: Sequence[str],
) -> list[dict[str, Any]]:
    """One row per persona x condition: the mean judge score per value over the persona's replies to
    ``prompts`` (``scores`` keyed by (condition, persona, prompt)). Every score must be finite."""
    rows = []
    for condition in conditions:
        for persona in personas:
            block = np.stack([np.asarray(scores[(condition, persona, q)], dtype=float) for q in prompts])
            if block.shape[1] != len(dims) or not np.isfinite(block).all():
                raise ValueError(f"{condition}/{persona}: judge scores are not {len(dims)} finite values per reply")
            mean = block.mean(axis=0)
            label = persona if condition == UNSTEERED else f"{persona}|{condition}"
            rows.append(
                {
                    "condition": label,
                    "role_kind": "persona",
                    "steering": condition,
                    **{d: float(mean[k]) for k, d in enumerate(dims)},
                }
            )
    return rows


def write_reply_matrix(path: Path, rows: Sequence[Mapping[str, Any]], dims: Sequence[str]) -> None:
    """Write ``rows`` as a score-matrix CSV (atomically: a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["condition", "role_kind", "steering", *dims])
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def build_reply_matrix(
    lm: LoadedModel,
    bundle_dir: Path,
    work: Path,
    out: Path,
    settings: ReplyMatrixSettings,
    *,
    restart: bool = False,
    log: Callable[[str], None] = print,
    backend: ReplyBackend | None = None,
) -> dict[str, Any]:
    """Generate, judge and average the replies (see the module docstring); write the matrix to ``out``
    and return a summary (rows, conditions, personas, prompts, replies, seconds)."""
    started = time.time()
    bundle = load_bundle(bundle_dir, expected_fingerprint=lm.fingerprint)
    if bundle.catalog is None:
        raise ConfigError.single(
            str(bundle_dir), "the bundle has no steering catalog", hint="run 'causalguard levers measure' first"
        )
    catalog = bundle.catalog
    dims = list(catalog.dimensions)
    levers = chosen_levers(catalog.levers, settings.levers)
    judge = load_probe_judge(bundle_dir, lm)
    sae = load_sae(bundle.sae_dir, lm) if bundle.sae_dir is not None and any(e.kind == "sae" for e in levers) else None
    vectors = (
        load_vectors(
            bundle.vectors_dir, hidden_size=lm.hidden_size, num_layers=lm.num_layers, fingerprint=lm.fingerprint
        )
        if bundle.vectors_dir is not None and any(e.kind in VECTOR_KINDS for e in levers)
        else None
    )
    prompts = list(load_prompts(dimensions=dims).split("dev").balanced_slice(settings.prompt_offset, settings.prompts))
    personas = reply_personas(settings.personas, settings.persona_seed)
    adapters = bundle_adapters(bundle, lm)
    conditions = [ReplyCondition(UNSTEERED)] + [
        lever_reply_condition(e, sae, catalog, vectors, adapters) for e in levers
    ]
    identity = {
        "model": lm.fingerprint,
        "settings": asdict(settings.replies),
        "prompts": [p.id for p in prompts],
        "personas": [asdict(p) for p in personas],
        "batch_size": settings.batch_size,
        "split": "dev",
        "purpose": "reply-matrix",
    }
    store = ReplyStore(work, identity, restart=restart)
    total = len(conditions) * len(personas) * len(prompts)
    log(
        f"reply matrix: {len(conditions)} conditions x {len(personas)} personas x {len(prompts)} dev prompts "
        f"= {total} replies"
    )
    replies = run_steered_replies(
        lm,
        conditions,
        personas,
        prompts,
        settings.replies,
        store,
        batch_size=settings.batch_size,
        log=log,
        backend=backend,
    )
    keys = [(c.id, p.id, q.id) for c in conditions for p in personas for q in prompts]
    w = judge.weights
    judge_id = hashlib.sha256(w.directions.tobytes() + w.midpoints.tobytes() + w.mean.tobytes()).hexdigest()[:16]
    log("judging ...")
    judged = cached_scores(
        work / "judge_scores.json",
        f"probe:{w.layer}:{judge_id}",
        keys,
        lambda idx: judge.score([replies[keys[i]].text for i in idx]).tolist(),
    )
    scores = {k: np.asarray(judged[i], dtype=float) for i, k in enumerate(keys)}
    rows = reply_rows(scores, [c.id for c in conditions], [p.id for p in personas], [q.id for q in prompts], dims)
    write_reply_matrix(out, rows, dims)
    return {
        "rows": len(rows),
        "conditions": len(conditions),
        "personas": len(personas),
        "prompts": len(prompts),
        "replies": total,
        "seconds": round(time.time() - started, 1),
    }
