"""Fit the probe judge on the labelled set's dev half and validate it on the test half.

- Layer: every ``layer_step``-th decoder layer is a candidate; each is scored by 5-fold
  cross-validation *within the dev half* (mean over values of the high-vs-low AUROC), and the best
  is kept. The test half is never used to choose anything.
- Validation on the test half, per value: ``auroc`` (high-pole vs low-pole replies of that value,
  with a 95% bootstrap interval), ``specificity_auroc`` (its high-pole replies vs every text that is
  not about this value, neutral ones included: does the score pick out *this* value?), and the
  confusion table (mean score on every value for each labelled class). Values under ``WEAK_AUROC``
  are marked weak; every output that uses the judge carries that mark.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from causalguard.judging.judge import ProbeJudge, ProbeWeights, ValueJudge, reply_features
from causalguard.judging.labelled import LabelledText
from causalguard.models.loaded import LoadedModel

WEAK_AUROC = 0.85


def auroc(positive: Sequence[float] | np.ndarray, negative: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U over all pairs; ties count half)."""
    pos, neg = np.asarray(positive, float), np.asarray(negative, float)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def bootstrap_auroc(
    positive: Sequence[float], negative: Sequence[float], *, n: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of the AUROC, resampling both classes."""
    rng = np.random.default_rng(seed)
    pos, neg = np.asarray(positive, float), np.asarray(negative, float)
    stats = [auroc(rng.choice(pos, len(pos)), rng.choice(neg, len(neg))) for _ in range(n)]
    return float(np.quantile(stats, 0.025)), float(np.quantile(stats, 0.975))


def _cv_score(feats: np.ndarray, texts: Sequence[LabelledText], dims: Sequence[str], folds: int = 5) -> float:
    idx = list(range(len(texts)))
    fold_of = [i % folds for i in idx]
    aucs = []
    for dim in dims:
        scores_h: list[float] = []
        scores_l: list[float] = []
        for f in range(folds):
            train = [i for i in idx if fold_of[i] != f]
            test = [i for i in idx if fold_of[i] == f and texts[i].value == dim]
            if not test:
                continue
            weights = ProbeWeights.fit(
                dims, 0, feats[train], [texts[i].value for i in train], [texts[i].pole for i in train]
            )
            s = weights.project(feats[test])[:, list(dims).index(dim)]
            for i, score in zip(test, s, strict=True):
                (scores_h if texts[i].pole == "high" else scores_l).append(float(score))
        aucs.append(auroc(scores_h, scores_l))
    return float(np.nanmean(aucs))


@dataclass(frozen=True)
class FittedJudge:
    judge: ProbeJudge
    layer_scores: dict[int, float]  # dev cross-validated mean AUROC per candidate layer
    validation: dict[str, Any]


def fit_probe_judge(
    lm: LoadedModel, labelled: Sequence[LabelledText], dims: Sequence[str], *, layer_step: int = 2
) -> FittedJudge:
    """Choose the layer and fit on the dev half; validate on the test half."""
    dev = [t for t in labelled if t.split == "dev" and (t.value in dims or t.pole == "neutral")]
    test = [t for t in labelled if t.split == "test" and (t.value in dims or t.pole == "neutral")]
    layers = list(range(1, lm.num_layers, layer_step))
    dev_feats = reply_features(lm, [t.text for t in dev], layers)
    layer_scores = {layer: _cv_score(dev_feats[:, k], dev, dims) for k, layer in enumerate(layers)}
    best = max(layers, key=lambda layer: layer_scores[layer])
    weights = ProbeWeights.fit(
        dims, best, dev_feats[:, layers.index(best)], [t.value for t in dev], [t.pole for t in dev]
    )
    judge = ProbeJudge(lm, weights)
    scores = judge.score([t.text for t in test])
    return FittedJudge(judge, layer_scores, validate_judge(scores, test, dims))


def validate_judge(scores: np.ndarray, texts: Sequence[LabelledText], dims: Sequence[str]) -> dict[str, Any]:
    """Per-value AUROCs (with 95% bootstrap intervals) and the confusion table on labelled texts."""
    per_value: dict[str, Any] = {}
    for k, dim in enumerate(dims):
        high = [scores[i, k] for i, t in enumerate(texts) if t.value == dim and t.pole == "high"]
        low = [scores[i, k] for i, t in enumerate(texts) if t.value == dim and t.pole == "low"]
        other = [scores[i, k] for i, t in enumerate(texts) if t.value != dim]
        a = auroc(high, low)
        lo, hi = bootstrap_auroc(high, low, seed=k)
        per_value[dim] = {
            "auroc": a,
            "auroc_ci": [lo, hi],
            "specificity_auroc": auroc(high, other),
            "n_high": len(high),
            "n_low": len(low),
            "weak": bool(not a >= WEAK_AUROC),
        }
    classes = [(d, p) for d in dims for p in ("high", "low")] + [(None, "neutral")]
    confusion = {}
    for value, pole in classes:
        rows = [i for i, t in enumerate(texts) if t.value == value and t.pole == pole]
        if rows:
            confusion[f"{value or 'neutral'}:{pole}"] = {d: float(scores[rows, k].mean()) for k, d in enumerate(dims)}
    aurocs = [v["auroc"] for v in per_value.values()]
    return {
        "split": "test",
        "n_texts": len(texts),
        "per_value": per_value,
        "confusion": confusion,
        "min_auroc": float(np.min(aurocs)),
        "mean_auroc": float(np.mean(aurocs)),
        "weak_values": [d for d, v in per_value.items() if v["weak"]],
    }


def validate_any_judge(judge: ValueJudge, labelled: Sequence[LabelledText], dims: Sequence[str]) -> dict[str, Any]:
    """Validate a judge that needs no fitting (e.g. ``ContrastJudge``) on the labelled test half."""
    test = [t for t in labelled if t.split == "test" and (t.value in dims or t.pole == "neutral")]
    scores = judge.score([t.text for t in test])
    order = [list(judge.dimensions).index(d) for d in dims]
    return validate_judge(scores[:, order], test, dims)
