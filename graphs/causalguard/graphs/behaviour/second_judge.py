"""The second judge's scores, kept beside a run's replies: a likelihood-contrast judge on another model
is slow on CPU (seconds per reply and value), so its scores are saved 32 replies at a time and a rerun
after an interruption resumes where it stopped."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from causalguard.graphs.behaviour.score_cache import cached_scores
from causalguard.judging.judge import ContrastJudge


def cached_contrast_scores(
    judge: ContrastJudge,
    path: Path,
    chosen: Sequence[tuple[str, str, str]],
    texts: Sequence[str],
    row: dict[tuple[str, str, str], int],
    log: Callable[[str], None],
) -> list[float]:
    """``judge``'s one-value scores of the ``chosen`` replies, kept in ``path`` 32 at a time."""
    name = judge.values[0].name

    def compute(idx: Sequence[int]) -> list[float]:
        return [float(x) for x in judge.score([texts[row[chosen[i]]] for i in idx])[:, 0]]

    def progress(done: int, total: int) -> None:
        log(f"  {name}: {done}/{total} replies")

    return cached_scores(path, judge.cache_version(), chosen, compute, chunk=32, progress=progress)
