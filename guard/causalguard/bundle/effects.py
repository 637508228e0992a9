"""Predicted side effects of interventions, with bootstrap uncertainty bands."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from causalguard.values.inventory import unknown_name_message


@dataclass(frozen=True)
class Prediction:
    """A value's predicted change: the median over bootstrap graphs, inside its 5th-95th percentile
    band (without bootstrap samples: the class-mean total effect, with a band of zero width)."""

    value: str
    change: float
    low: float  # 5th percentile over bootstrap graphs
    high: float  # 95th percentile


@dataclass(frozen=True)
class EffectModel:
    """Total effects ``T[i, j]`` (mean over the class) and bootstrap samples of them."""

    nodes: tuple[str, ...]
    total: np.ndarray
    samples: np.ndarray  # (bootstraps, n, n); may be empty

    def index(self, value: str) -> int:
        if value not in self.nodes:
            raise KeyError(unknown_name_message(value, list(self.nodes), what="value"))
        return self.nodes.index(value)

    def predict_lever(self, direct: Mapping[str, float]) -> list[Prediction]:
        """A lever that directly changes values by ``direct`` moves every value by ``direct @ T``."""
        d = np.zeros(len(self.nodes))
        for value, delta in direct.items():
            d[self.index(value)] = delta
        if not np.isfinite(d).all():
            raise ValueError("intervention sizes must be finite numbers")
        change = d @ self.total
        if self.samples.size:
            draws = np.einsum("i,bij->bj", d, self.samples)
            low, high = np.quantile(draws, 0.05, axis=0), np.quantile(draws, 0.95, axis=0)
            change = np.median(draws, axis=0)
        else:
            low = high = change
        return [Prediction(v, float(change[k]), float(low[k]), float(high[k])) for k, v in enumerate(self.nodes)]

    def predict_do(self, value: str, delta: float) -> list[Prediction]:
        """do(value += delta): the expected change of every value."""
        return self.predict_lever({value: delta})
