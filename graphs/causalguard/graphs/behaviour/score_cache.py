"""Per-reply scores kept beside a run's replies (``<work>/<name>.json``), by reply key, so a rerun after an
interruption scores only what is missing: the probe judge's scores, reply quality and the second judge's
scores all go through ``cached_scores``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from causalguard.judging.reply_quality import ReplyQuality, reply_quality
from causalguard.models.loaded import LoadedModel

QUALITY_CACHE_VERSION = "served-context-v3"  # bump when reply_quality's measures change


def cached_scores(
    path: Path,
    version: Any,
    keys: Sequence[tuple[str, str, str]],
    compute: Callable[[Sequence[int]], list[Any]],
    *,
    chunk: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[Any]:
    """Per-reply scores kept beside the replies, by reply key: ``compute(indices)`` scores only the
    replies (of ``keys``) not yet in the cache; everything is recomputed when ``version`` changes. Order
    and subsets of ``keys`` may change between runs (levers added or dropped). ``chunk`` > 0 scores and
    saves that many replies at a time (a slow judge interrupted loses at most one chunk), reporting
    ``progress(done, total)`` after each."""
    saved: dict[tuple[str, ...], Any] = {}
    if path.exists():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("tag", {}).get("version") == version:
                saved = {tuple(k): v for k, v in zip(doc["tag"]["keys"], doc["scores"], strict=True)}
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError, ValueError):
            saved = {}  # recompute a damaged cache
    missing = [i for i, k in enumerate(keys) if tuple(k) not in saved]
    step = chunk if chunk > 0 else max(1, len(missing))
    for start in range(0, len(missing), step):
        part = missing[start : start + step]
        for i, score in zip(part, compute(part), strict=True):
            saved[tuple(keys[i])] = score
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"tag": {"version": version, "keys": [list(k) for k in saved]}, "scores": list(saved.values())})
        )
        os.replace(tmp, path)
        if progress is not None:
            progress(len(keys) - len(missing) + start + len(part), len(keys))
    return [saved[tuple(k)] for k in keys]


def cached_reply_quality(
    lm: LoadedModel,
    work: Path,
    keys: Sequence[tuple[str, str, str]],
    prompts: Sequence[str],
    texts: Sequence[str],
    systems: Sequence[str | None],
) -> list[ReplyQuality]:
    """``reply_quality`` of each reply (``prompts``, ``texts`` and served ``systems`` aligned with ``keys``),
    kept in ``work/quality_scores.json``."""

    def compute(idx: Sequence[int]) -> list[dict[str, Any]]:
        measured = reply_quality(
            lm, [prompts[i] for i in idx], [texts[i] for i in idx], systems=[systems[i] for i in idx]
        )
        return [q.as_dict() for q in measured]

    return [
        ReplyQuality(**q) for q in cached_scores(work / "quality_scores.json", QUALITY_CACHE_VERSION, keys, compute)
    ]
