"""The judging half of the dev probes in ``scripts/`` (``probe_labelled_vectors.py``,
``probe_pair_levers.py``): per steered condition, the target's change against the unsteered replies by
the bundle's probe judge, the Gemma 3 270M probe and the Gemma likelihood-contrast judge (95% t), and
degraded replies against unguarded (the bundle's quality calibration, one-sided Fisher). Scores and
quality are cached in the work folder, so a rerun resumes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from causalguard.bundle.format import Bundle
from causalguard.graphs.behaviour.replies import Persona, Reply, ReplyCondition
from causalguard.graphs.behaviour.report import served_system_prompt, t_interval
from causalguard.graphs.behaviour.score_cache import cached_reply_quality
from causalguard.graphs.behaviour.second_judge import load_other_judge
from causalguard.judging.judge import ProbeJudge
from causalguard.judging.prompt_sets import Prompt
from causalguard.judging.reply_quality import compare_degradation, cross_prompt_sameness
from causalguard.models.loaded import LoadedModel


def _fmt(x: dict[str, float], digits: int = 3) -> str:
    return f"{x['mean']:+.{digits}f} ({x['ci_low']:+.{digits}f}, {x['ci_high']:+.{digits}f})"


def judge_conditions(
    lm: LoadedModel,
    bundle_dir: Path,
    bundle: Bundle,
    judge: ProbeJudge,
    work: Path,
    conditions: Sequence[ReplyCondition],
    personas: Sequence[Persona],
    prompts: Sequence[Prompt],
    replies: dict[tuple[str, str, str], Reply],
    target_of: Callable[[str], tuple[str, int]],
) -> dict[str, dict[str, Any]]:
    """Figures per steered condition (every condition but the first, ``none``), printed as they come.
    ``target_of`` maps a condition id to its (value, direction)."""
    assert bundle.behaviour is not None
    dims = list(judge.dimensions)
    keys = [(c.id, p.id, q.id) for c in conditions for p in personas for q in prompts]
    texts = [replies[k].text for k in keys]
    row = {k: i for i, k in enumerate(keys)}
    scores = judge.score(texts)
    systems = {p.id: p.system_prompt for p in personas}
    instructions = {c.id: c.instructions for c in conditions}
    quality = cached_reply_quality(
        lm,
        work,
        keys,
        [next(q.text for q in prompts if q.id == k[2]) for k in keys],
        texts,
        [served_system_prompt(systems[k[1]], instructions[k[0]]) for k in keys],
    )
    sameness = cross_prompt_sameness(texts, [f"{k[0]}|{k[1]}" for k in keys], [k[2] for k in keys])
    quality = [dataclasses.replace(q, sameness=x) for q, x in zip(quality, sameness, strict=True)]
    calibration = bundle.behaviour.calibration
    base_flags = [calibration.degraded(quality[row[("none", p.id, q.id)]]) for p in personas for q in prompts]
    gemma_probe = load_other_judge(f"probe:{bundle_dir / 'second_judge'}", "check")
    contrast = load_other_judge("gemma3-270m", "second", load=lambda name: gemma_probe.judge.lm)
    pairs = [(p.id, q.id) for p in personas for q in prompts]
    width = max(len(c.id) for c in conditions)
    results = {}
    for c in conditions[1:]:
        value, sign = target_of(c.id)
        j = dims.index(value)
        probe = t_interval(np.asarray([scores[row[(c.id, *pq)], j] - scores[row[("none", *pq)], j] for pq in pairs]))
        chosen = [(c.id, *pq) for pq in pairs] + [("none", *pq) for pq in pairs]
        judged = {}
        for name, other in (("gemma_probe", gemma_probe), ("contrast", contrast)):
            s = np.asarray(other.target_scores(value, work, chosen, texts, row, lambda _: None))
            judged[name] = t_interval(s[: len(pairs)] - s[len(pairs) :])
        flags = [calibration.degraded(quality[row[(c.id, *pq)]]) for pq in pairs]
        degradation = compare_degradation(flags, base_flags).as_dict()
        results[c.id] = {"value": value, "sign": sign, "probe": probe, **judged, "quality": degradation}
        print(
            f"{c.id:{width}s} probe {_fmt(probe)}  gemma probe {_fmt(judged['gemma_probe'])}  "
            f"contrast {_fmt(judged['contrast'], 4)}  degraded {degradation['degraded']}/{degradation['n']} "
            f"({degradation['baseline_degraded']}/{degradation['baseline_n']}, p {degradation['p_value']:.2f})",
            flush=True,
        )
    return results
