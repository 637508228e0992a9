"""Audit statistics that accumulate across rounds: running estimates, power, and the two alarms.

Each audit round adds, per value, paired differences (guarded minus unguarded judge score on the
same prompt) and, per reply, whether it is degraded (outside the unsteered quality range). Across
rounds:

- the running estimate of the change per value: mean and 95% t-interval of all pairs so far;
- the power to detect the planned change: the chance that a two-sided test at 5% on this many pairs,
  with the spread seen so far, finds a change as large as the plan's (normal approximation);
- the drift alarm: the measured interval and the plan's forecast interval do not overlap (only after
  ``min_pairs`` pairs; a plan with no forecast interval is a point);
- the quality alarm: guarded replies are degraded more often than unguarded ones on the same prompts
  (one-sided Fisher exact, p < 0.05, after ``min_pairs`` replies).

The statistics are pure functions of what was added; nothing here touches a model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from causalguard.judging.reply_quality import Degradation, compare_degradation


@dataclass(frozen=True)
class RunningEstimate:
    mean: float
    low: float
    high: float
    n: int
    sd: float

    def excludes(self, low: float, high: float) -> bool:
        """True when this interval and [low, high] do not overlap."""
        return self.high < low or self.low > high


def estimate(diffs: Sequence[float]) -> RunningEstimate:
    n = len(diffs)
    if n == 0:
        return RunningEstimate(math.nan, math.nan, math.nan, 0, math.nan)
    mean = sum(diffs) / n
    if n < 2:
        return RunningEstimate(mean, -math.inf, math.inf, 1, math.nan)
    from scipy import stats

    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return RunningEstimate(mean, mean - half, mean + half, n, sd)


def power_to_detect(change: float, sd: float, n: int) -> float:
    """Power of a two-sided 5% test on ``n`` pairs with spread ``sd`` to find ``change`` (normal approx.)."""
    from scipy.stats import norm

    if n < 2 or not math.isfinite(sd) or not math.isfinite(change):
        return 0.0
    if sd == 0:
        return 1.0 if change != 0 else 0.05
    z = abs(change) / (sd / math.sqrt(n))
    return float(norm.cdf(z - 1.959964) + norm.cdf(-z - 1.959964))


@dataclass
class AuditAccumulator:
    """Everything audits of one plan have measured so far (reset when the plan changes)."""

    plan_key: tuple[str, ...]
    min_pairs: int = 8
    diffs: dict[str, list[float]] = field(default_factory=dict)
    guarded_degraded: list[bool] = field(default_factory=list)
    unguarded_degraded: list[bool] = field(default_factory=list)
    rounds: int = 0

    def add(
        self, diffs: Mapping[str, Sequence[float]], guarded_degraded: Sequence[bool], unguarded_degraded: Sequence[bool]
    ) -> None:
        for value, ds in diffs.items():
            bad = [d for d in ds if not math.isfinite(d)]
            if bad:
                raise ValueError(f"audit difference for {value} is not finite: {bad[0]}")
            self.diffs.setdefault(value, []).extend(float(d) for d in ds)
        self.guarded_degraded.extend(bool(x) for x in guarded_degraded)
        self.unguarded_degraded.extend(bool(x) for x in unguarded_degraded)
        self.rounds += 1

    def estimate(self, value: str) -> RunningEstimate:
        return estimate(self.diffs.get(value, []))

    def power(self, value: str, planned_change: float) -> float:
        e = self.estimate(value)
        return power_to_detect(planned_change, e.sd, e.n)

    def drift_alarm(self, value: str, plan_low: float, plan_high: float) -> bool:
        e = self.estimate(value)
        return e.n >= self.min_pairs and e.excludes(plan_low, plan_high)

    def quality(self) -> Degradation | None:
        if len(self.guarded_degraded) < self.min_pairs or not self.unguarded_degraded:
            return None
        return compare_degradation(self.guarded_degraded, self.unguarded_degraded)

    def quality_alarm(self) -> bool:
        q = self.quality()
        return q is not None and q.is_degraded
