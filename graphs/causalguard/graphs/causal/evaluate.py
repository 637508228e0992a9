"""Held-out evaluation: does the graph predict how value roles move the *other* values?

Personas are split into train and test halves (seeded). For each target value X with both value
roles in the matrix, a graph is discovered on the training rows (baseline, anchors, training
personas and the value roles of the other targets: X's own roles are held out), an SEM is fitted,
and the measured contrast m = score(inclined to X) - score(disinclined to X) is predicted from its
on-target part alone: predicted[v] = m[X] * T[X, v]. A value "moved beyond noise" when |m[v]| exceeds
1.96 x the standard deviation of the difference between two test personas on v.

Predictors compared on the same pairs (target, other value): the discovered graph, no graph (no side
effects), correlation only (regression slope of v on X), the human circumplex (cosine pattern scaled
by standard deviations; Schwartz values only), and random graphs with the discovered edge count.
Metrics: AUROC of |predicted| for "moved", sign accuracy on moved values (a zero prediction counts
as a coin flip), MAE over all pairs. Also the paper's statistic: change rate of X's descendants vs
non-descendants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from causalguard.bundle.graph import ValueGraph
from causalguard.graphs.causal.discovery import PCSettings, run_pc
from causalguard.graphs.causal.matrix import ScoreMatrix
from causalguard.graphs.causal.reference import circumplex_pattern
from causalguard.graphs.causal.sem import class_total_effects, fit_sem


@dataclass
class PredictedPair:
    target: str
    value: str
    measured: float
    moved: bool
    predicted: dict[str, float]


def auroc(scores: list[float], labels: list[bool]) -> float | None:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula, ties at average ranks; None if
    one class is empty."""
    from scipy.stats import rankdata

    positive = np.asarray(labels, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if not n_pos or not n_neg:
        return None
    ranks = rankdata(np.asarray(scores, dtype=float))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _role_rows(matrix: ScoreMatrix) -> dict[str, int]:
    return {info.get("condition", ""): i for i, info in enumerate(matrix.row_info)}


def evaluate_held_out(
    matrix: ScoreMatrix, settings: PCSettings, *, seed: int = 0, random_graphs: int = 20
) -> dict[str, Any]:
    rows = _role_rows(matrix)
    kinds = [info.get("role_kind", "") for info in matrix.row_info]
    personas = [i for i, k in enumerate(kinds) if k == "persona"]
    targets = [v for v in matrix.columns if f"value:{v}:inclined" in rows and f"value:{v}:disinclined" in rows]
    if len(personas) < 6 or not targets:
        return {"applicable": False, "reason": "needs a causalguard survey matrix with >= 6 personas and value roles"}
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(personas)
    test = sorted(shuffled[: len(shuffled) // 2].tolist())
    test_set = set(test)
    data = matrix.values
    noise = data[test].std(axis=0, ddof=1) * np.sqrt(2)
    pattern = circumplex_pattern(matrix.columns)
    col = {v: j for j, v in enumerate(matrix.columns)}
    pairs: list[PredictedPair] = []
    paper = {"descendant": [0, 0], "non_descendant": [0, 0]}
    for target in targets:
        held = {rows[f"value:{target}:inclined"], rows[f"value:{target}:disinclined"]}
        train_idx = [i for i in range(len(data)) if i not in held and i not in test_set]
        train = data[train_idx]
        graph = run_pc(train, matrix.columns, settings)
        effects = class_total_effects(graph, train).mean
        m = data[rows[f"value:{target}:inclined"]] - data[rows[f"value:{target}:disinclined"]]
        x = col[target]
        delta = m[x]
        sd = train.std(axis=0, ddof=1)
        cov = np.cov(train, rowvar=False)
        randoms = [random_graph_effects(graph, train, matrix.columns, rng) for _ in range(random_graphs)]
        descendants = graph.descendants(target)
        for v in matrix.columns:
            if v == target:
                continue
            j = col[v]
            moved = bool(abs(m[j]) > 1.96 * noise[j])
            predicted = {
                "graph": float(delta * effects[x, j]),
                "no_graph": 0.0,
                "correlation": float(delta * cov[x, j] / cov[x, x]),
            }
            if pattern is not None:
                predicted["human_circumplex"] = float(delta * pattern[x, j] * sd[j] / sd[x])
            for k, r in enumerate(randoms):
                predicted[f"random_{k}"] = float(delta * r[x, j])
            pairs.append(PredictedPair(target, v, float(m[j]), moved, predicted))
            bucket = paper["descendant" if v in descendants else "non_descendant"]
            bucket[0] += int(moved)
            bucket[1] += 1
    return {
        "applicable": True,
        "train_personas": len(personas) - len(test),
        "test_personas": len(test),
        "targets": len(targets),
        "pairs": len(pairs),
        "moved_share": round(sum(p.moved for p in pairs) / len(pairs), 4),
        "predictors": _score_predictors(pairs, random_graphs),
        "paper_statistic": {
            name: {"changed": c, "total": t, "rate": round(c / t, 4) if t else None} for name, (c, t) in paper.items()
        },
    }


def predictor_metrics(pairs: list[PredictedPair], key: Callable[[PredictedPair], float]) -> dict[str, float | None]:
    preds = [key(p) for p in pairs]
    moved = [p for p in pairs if p.moved]
    signs = [1.0 if np.sign(key(p)) == np.sign(p.measured) else (0.5 if key(p) == 0 else 0.0) for p in moved]
    score = auroc([abs(x) for x in preds], [p.moved for p in pairs])
    return {
        "auroc": None if score is None else round(score, 4),
        "sign_accuracy": round(float(np.mean(signs)), 4) if signs else None,
        "mae": round(float(np.mean([abs(x - p.measured) for x, p in zip(preds, pairs, strict=True)])), 4),
    }


def _score_predictors(pairs: list[PredictedPair], random_graphs: int) -> dict[str, dict[str, float | None]]:
    def column(name: str) -> Callable[[PredictedPair], float]:
        return lambda pair: pair.predicted[name]

    names = [n for n in pairs[0].predicted if not n.startswith("random_")]
    table = {name: predictor_metrics(pairs, column(name)) for name in names}
    if random_graphs:
        runs = [predictor_metrics(pairs, column(f"random_{k}")) for k in range(random_graphs)]
        averaged: dict[str, float | None] = {}
        for metric in ("auroc", "sign_accuracy", "mae"):
            values = [v for r in runs if (v := r[metric]) is not None]
            averaged[metric] = round(float(np.mean(values)), 4) if values else None
        table[f"random_graphs (mean of {random_graphs})"] = averaged
    return table


def random_graph_effects(graph: ValueGraph, data: np.ndarray, nodes: list[str], rng: np.random.Generator) -> Any:
    """Total effects of an SEM on a random DAG with as many edges as ``graph``."""
    n = len(nodes)
    order = rng.permutation(n)
    possible = [(order[a], order[b]) for a in range(n) for b in range(a + 1, n)]
    chosen = rng.choice(len(possible), size=min(len(graph.edges), len(possible)), replace=False)
    dag = nx.DiGraph()
    dag.add_nodes_from(nodes)
    dag.add_edges_from((nodes[possible[k][0]], nodes[possible[k][1]]) for k in chosen)
    return fit_sem(dag, data, nodes).total_effects()
