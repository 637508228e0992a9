"""The live monitor's arithmetic: a sliding window of judged replies per profile, and the drift test.

A ``ScoreWindow`` keeps the last ``size`` judged replies of one profile under one plan (its value
scores and whether each reply was degraded). ``window_mean`` is the mean with its 95% t-interval;
``change_vs_reference`` is the difference of two windows' means with a Welch interval (the replies of
the two profiles are independent samples of the traffic each received). ``drift_alarm`` fires when
that interval lies wholly outside the plan's forecast interval, after ``min_replies`` on both sides,
the same rule as the reply audits' paired drift alarm.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class LiveEstimate:
    """A mean with its 95% interval over ``n`` replies (NaN bounds while ``n < 2``)."""

    n: int
    mean: float
    low: float
    high: float


class ScoreWindow:
    """The last ``size`` judged replies of one profile under the plan ``plan_key``."""

    def __init__(self, plan_key: Hashable, dimensions: Sequence[str], size: int) -> None:
        if size < 2:
            raise ValueError(f"a score window needs room for at least 2 replies, got {size}")
        self.plan_key = plan_key
        self.dimensions = tuple(dimensions)
        self.scores: dict[str, deque[float]] = {d: deque(maxlen=size) for d in self.dimensions}
        self.degraded: deque[bool] = deque(maxlen=size)

    def add(self, scores: Mapping[str, float], degraded: bool) -> None:
        """One judged reply: a finite score for every value of the window."""
        missing = [d for d in self.dimensions if d not in scores]
        if missing:
            raise ValueError(f"a judged reply needs a score for every value; missing {', '.join(missing)}")
        bad = [d for d in self.dimensions if not math.isfinite(scores[d])]
        if bad:
            raise ValueError(f"non-finite judge scores for {', '.join(bad)}")
        for d in self.dimensions:
            self.scores[d].append(float(scores[d]))
        self.degraded.append(bool(degraded))

    def __len__(self) -> int:
        return len(self.degraded)

    def degraded_rate(self) -> float:
        return sum(self.degraded) / len(self.degraded) if self.degraded else 0.0

    def window_mean(self, value: str) -> LiveEstimate:
        xs = self.scores[value]
        n = len(xs)
        if n == 0:
            return LiveEstimate(0, math.nan, math.nan, math.nan)
        mean = sum(xs) / n
        if n < 2:
            return LiveEstimate(n, mean, math.nan, math.nan)
        half = float(stats.t.ppf(0.975, n - 1)) * math.sqrt(_variance(xs, mean) / n)
        return LiveEstimate(n, mean, mean - half, mean + half)


def _variance(xs: Sequence[float], mean: float) -> float:
    return sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)


def change_vs_reference(window: ScoreWindow, reference: ScoreWindow, value: str) -> LiveEstimate:
    """``window``'s mean minus ``reference``'s on ``value`` with a Welch 95% interval (``n``: the smaller
    side; NaN bounds until both sides hold 2 replies)."""
    a, b = window.scores[value], reference.scores[value]
    n = min(len(a), len(b))
    if not a or not b:
        return LiveEstimate(n, math.nan, math.nan, math.nan)
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    diff = ma - mb
    if n < 2:
        return LiveEstimate(n, diff, math.nan, math.nan)
    va, vb = _variance(a, ma) / len(a), _variance(b, mb) / len(b)
    se2 = va + vb
    if se2 == 0:
        return LiveEstimate(n, diff, diff, diff)
    dof = se2**2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.975, dof)) * math.sqrt(se2)
    return LiveEstimate(n, diff, diff - half, diff + half)


def drift_alarm(change: LiveEstimate, forecast_low: float, forecast_high: float, *, min_replies: int) -> bool:
    """True when ``change`` (after ``min_replies`` on both sides) excludes the forecast interval."""
    if change.n < min_replies or not (math.isfinite(change.low) and math.isfinite(change.high)):
        return False
    return change.high < forecast_low or change.low > forecast_high
