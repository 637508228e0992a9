"""Leave one lever out: can a graph discovered without a lever's rows predict what the lever does?

Training rows are an observational survey (unsteered personas, value roles, anchors) plus the rows
of every *other* intervention in the interventional matrix, with one indicator column per
intervention that enters PC as a source only (joint causal inference: the paper's variant). For each
intervention, the graph is discovered on the training rows without its own rows, the SEM's total
effects among the values are fitted on them, and the intervention is predicted from its measured
on-target change (``interventions.evaluate_interventions`` scores it against the baselines).

``learning_curve`` repeats this on random fractions of the training rows: how the graph's AUROC grows
with rows, which tells how many rows the target would need.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from causalguard.graphs.bundle.format import Bundle
from causalguard.graphs.causal.discovery import Knowledge, PCSettings, run_pc
from causalguard.graphs.causal.graph import ValueGraph
from causalguard.graphs.causal.interventions import (
    UNSTEERED,
    Intervention,
    aligned,
    evaluate_interventions,
    id_layout,
)
from causalguard.graphs.causal.matrix import ScoreMatrix
from causalguard.graphs.causal.sem import class_total_effects


class _Pool:
    """Training rows: the survey's, then the interventional matrix's, with intervention indicators."""

    def __init__(self, survey: ScoreMatrix, test: ScoreMatrix, nodes: list[str]) -> None:
        survey, test = aligned(survey, nodes, "--train"), aligned(test, nodes)
        steer_col, _ = id_layout(test)
        labels = [info.get(steer_col, "").strip() for info in test.row_info]
        self.interventions = sorted({s for s in labels if s.lower() not in UNSTEERED})
        self.values = np.vstack([survey.values, test.values])
        self.steering = [""] * len(survey.values) + labels  # "" = unsteered or observational
        self.indicators = np.zeros((len(self.values), len(self.interventions)))
        for row, label in enumerate(self.steering):
            if label in self.interventions:
                self.indicators[row, self.interventions.index(label)] = 1.0
        self.nodes = nodes

    def graph_without(self, held_out: str, rows: np.ndarray, settings: PCSettings) -> tuple[ValueGraph, np.ndarray]:
        """PC and SEM on ``rows`` minus ``held_out``'s rows; indicator columns are sources only."""
        k = self.interventions.index(held_out)
        keep = np.array([r for r in rows if self.steering[r] != held_out])
        others = [j for j in range(len(self.interventions)) if j != k and self.indicators[keep, j].any()]
        data = np.hstack([self.values[keep], self.indicators[np.ix_(keep, np.asarray(others, dtype=int))]])
        names = [*self.nodes, *(f"do:{self.interventions[j]}" for j in others)]
        knowledge = Knowledge(sources_only=tuple(names[len(self.nodes):]))
        graph = run_pc(data, names, replace(settings, knowledge=knowledge))
        n = len(self.nodes)
        total = class_total_effects(graph, data).mean[:n, :n]
        edges = tuple(e for e in graph.edges if e.source in self.nodes and e.target in self.nodes)
        return ValueGraph(tuple(self.nodes), edges), total


def leave_one_lever_out(survey: ScoreMatrix, test: ScoreMatrix, bundle: Bundle, settings: PCSettings, *,
                        fraction: float = 1.0, seed: int = 0, random_graphs: int = 20,
                        bootstraps: int = 1000) -> dict[str, Any]:
    """Every intervention predicted by a graph discovered without its rows (on ``fraction`` of the rest)."""
    nodes = list(bundle.effects.nodes)
    pool = _Pool(survey, test, nodes)
    rng = np.random.default_rng(seed)
    rows = np.arange(len(pool.values))
    if fraction < 1.0:
        rows = np.sort(rng.choice(rows, size=max(len(nodes) + 5, round(fraction * len(rows))), replace=False))
    used: list[int] = []

    def graph_for(item: Intervention) -> tuple[ValueGraph, np.ndarray]:
        graph, total = pool.graph_without(item.id, rows, settings)
        used.append(len(graph.edges))
        return graph, total

    unsteered = np.array([r for r in rows if pool.steering[r].lower() in UNSTEERED])
    doc = evaluate_interventions(test, bundle, random_graphs=random_graphs, bootstraps=bootstraps, seed=seed,
                                 graph_for=graph_for, observational=pool.values[unsteered])
    doc["training_rows"] = len(rows)
    doc["edges_per_graph"] = float(np.median(used)) if used else 0.0
    return doc


def learning_curve(survey: ScoreMatrix, test: ScoreMatrix, bundle: Bundle, settings: PCSettings,
                   fractions: Sequence[float], *, repeats: int = 3, seed: int = 0) -> list[dict[str, Any]]:
    """Leave-one-lever-out AUROC of the graph (and of correlation) against training rows."""
    out = []
    for fraction in fractions:
        runs = [leave_one_lever_out(survey, test, bundle, settings, fraction=fraction, seed=seed + r,
                                    random_graphs=0, bootstraps=0) for r in range(repeats if fraction < 1 else 1)]
        graph = [run["predictors"]["graph"]["auroc"] for run in runs]
        correlation = [run["predictors"]["correlation"]["auroc"] for run in runs]
        out.append({"fraction": fraction, "training_rows": runs[0]["training_rows"], "repeats": len(runs),
                    "graph_auroc": _mean(graph), "correlation_auroc": _mean(correlation),
                    "edges": float(np.mean([run["edges_per_graph"] for run in runs]))})
    return out


def _mean(values: list[Any]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(float(np.mean(kept)), 4) if kept else None
