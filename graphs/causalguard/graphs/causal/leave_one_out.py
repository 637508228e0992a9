"""Leave one lever out: can a graph discovered without a lever's rows predict what the lever does?

Training rows are an observational survey (unsteered personas, value roles, anchors) plus the rows
of every *other* intervention in the interventional matrix, with context columns that enter PC as
sources only (joint causal inference, ``contexts.py``). For each intervention, the graph is
discovered on the training rows without its own rows, the SEM's total effects among the values are
fitted on them, and the intervention is predicted from its measured on-target change
(``interventions.evaluate_interventions`` scores it against the baselines). One PC run per
intervention, no bootstrap: the shipped graph's stability selection would cost 100 runs each.

``learning_curve`` repeats this on random fractions of the training rows: how the graph's AUROC grows
with rows, which tells how many rows the target would need.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from causalguard.bundle.format import Bundle
from causalguard.bundle.graph import ValueGraph
from causalguard.graphs.causal.contexts import JointMatrix, joint_matrix
from causalguard.graphs.causal.discovery import PCSettings, run_pc
from causalguard.graphs.causal.interventions import Intervention, Units, evaluate_interventions
from causalguard.graphs.causal.matrix import ScoreMatrix
from causalguard.graphs.causal.sem import class_total_effects


def graph_on(joint: JointMatrix, rows: np.ndarray, settings: PCSettings) -> tuple[ValueGraph, np.ndarray]:
    """PC and the class's SEM total effects on ``rows`` of ``joint``, context columns as sources only; the
    graph and effects among the values."""
    data, names, contexts = joint.data(rows)
    knowledge = replace(settings.knowledge, sources_only=(*settings.knowledge.sources_only, *contexts))
    graph = run_pc(data, names, replace(settings, knowledge=knowledge))
    n = len(joint.nodes)
    total = class_total_effects(graph, data).mean[:n, :n]
    edges = tuple(e for e in graph.edges if e.source in joint.nodes and e.target in joint.nodes)
    return ValueGraph(joint.nodes, edges), total


def leave_one_lever_out(
    survey: ScoreMatrix | None,
    test: ScoreMatrix,
    bundle: Bundle,
    settings: PCSettings,
    *,
    fraction: float = 1.0,
    seed: int = 0,
    random_graphs: int = 20,
    bootstraps: int = 1000,
    units: Units = "survey",
) -> dict[str, Any]:
    """Every intervention predicted by a graph discovered without its rows (on ``fraction`` of the rest).
    ``survey`` None: the observational rows are ``test``'s own unsteered rows (a reply matrix); ``units``
    says which of the catalog's measurements is the catalog forecast."""
    nodes = list(bundle.effects.nodes)
    joint = joint_matrix(survey, test, nodes, bundle.catalog)
    rng = np.random.default_rng(seed)
    rows = np.arange(joint.rows)
    if fraction < 1.0:
        rows = np.sort(rng.choice(rows, size=max(len(nodes) + 5, round(fraction * len(rows))), replace=False))
    used: list[int] = []

    def graph_for(item: Intervention) -> tuple[ValueGraph, np.ndarray]:
        graph, total = graph_on(joint, np.intersect1d(rows, joint.without(item.id)), settings)
        used.append(len(graph.edges))
        return graph, total

    doc = evaluate_interventions(
        test,
        bundle,
        random_graphs=random_graphs,
        bootstraps=bootstraps,
        seed=seed,
        graph_for=graph_for,
        observational=joint.values[joint.unsteered(rows)],
        units=units,
    )
    doc["training_rows"] = len(rows)
    doc["edges_per_graph"] = float(np.median(used)) if used else 0.0
    return doc


def learning_curve(
    survey: ScoreMatrix | None,
    test: ScoreMatrix,
    bundle: Bundle,
    settings: PCSettings,
    fractions: Sequence[float],
    *,
    repeats: int = 3,
    seed: int = 0,
    units: Units = "survey",
) -> list[dict[str, Any]]:
    """Leave-one-lever-out AUROC of the graph (and of correlation) against training rows."""
    out = []
    for fraction in fractions:
        runs = [
            leave_one_lever_out(
                survey,
                test,
                bundle,
                settings,
                fraction=fraction,
                seed=seed + r,
                random_graphs=0,
                bootstraps=0,
                units=units,
            )
            for r in range(repeats if fraction < 1 else 1)
        ]
        graph = [run["predictors"]["graph"]["auroc"] for run in runs]
        correlation = [run["predictors"]["correlation"]["auroc"] for run in runs]
        out.append(
            {
                "fraction": fraction,
                "training_rows": runs[0]["training_rows"],
                "repeats": len(runs),
                "graph_auroc": _mean(graph),
                "correlation_auroc": _mean(correlation),
                "edges": float(np.mean([run["edges_per_graph"] for run in runs])),
            }
        )
    return out


def _mean(values: list[Any]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(float(np.mean(kept)), 4) if kept else None
