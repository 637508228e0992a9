"""Internal-consistency reliability of a dimension across conditions (conditions act as respondents)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def cronbach_alpha(scores: np.ndarray) -> float:
    """Cronbach's alpha of a (respondents, items) matrix; NaN when it is undefined."""
    n, k = scores.shape
    if n < 2 or k < 2:
        return float("nan")
    total_var = scores.sum(axis=1).var(ddof=1)
    if total_var <= 0:
        return float("nan")
    return float(k / (k - 1) * (1 - scores.var(axis=0, ddof=1).sum() / total_var))


def balanced_halves(polarities: Sequence[int]) -> tuple[list[int], list[int]]:
    """Split item indices into two halves with the same mix of pro- and reverse-keyed items."""
    first: list[int] = []
    second: list[int] = []
    for key in (1, -1):
        group = [i for i, p in enumerate(polarities) if p == key]
        first.extend(group[0::2])
        second.extend(group[1::2])
    return sorted(first), sorted(second)


def split_half(scores: np.ndarray, polarities: Sequence[int]) -> float:
    """Spearman-Brown corrected correlation between two polarity-balanced halves; NaN if undefined."""
    first, second = balanced_halves(polarities)
    if scores.shape[0] < 3 or not first or not second:
        return float("nan")
    a = scores[:, first].mean(axis=1)
    b = scores[:, second].mean(axis=1)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    r = float(np.corrcoef(a, b)[0, 1])
    return 2 * r / (1 + r) if r > -1 else float("nan")
