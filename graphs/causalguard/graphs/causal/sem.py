"""Linear-Gaussian SEMs on the DAGs of a graph's equivalence class, and total causal effects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np

from causalguard.bundle.graph import ValueGraph


@dataclass(frozen=True)
class LinearSEM:
    """X = B^T X + e: ``coefficients[i, j]`` is the direct effect of node i on node j."""

    nodes: tuple[str, ...]
    coefficients: np.ndarray

    def total_effects(self) -> np.ndarray:
        """``T[i, j]``: change in j per unit intervention on i, along all directed paths (T[i, i] = 1)."""
        n = len(self.nodes)
        return np.linalg.inv(np.eye(n) - self.coefficients)


def fit_sem(dag: nx.DiGraph, data: np.ndarray, nodes: Sequence[str]) -> LinearSEM:
    """Least-squares fit of every node on its parents in ``dag`` (data columns in ``nodes`` order)."""
    index = {name: k for k, name in enumerate(nodes)}
    centred = data - data.mean(axis=0)
    coefficients = np.zeros((len(nodes), len(nodes)))
    for node in nodes:
        parents = sorted(dag.predecessors(node), key=index.__getitem__)
        if not parents:
            continue
        columns = [index[p] for p in parents]
        beta, *_ = np.linalg.lstsq(centred[:, columns], centred[:, index[node]], rcond=None)
        coefficients[columns, index[node]] = beta
    return LinearSEM(tuple(nodes), coefficients)


@dataclass(frozen=True)
class ClassEffects:
    """Total effects averaged over the DAGs of an equivalence class, with their spread."""

    nodes: tuple[str, ...]
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    dags: int


def class_total_effects(graph: ValueGraph, data: np.ndarray, *, limit: int = 64, seed: int = 0) -> ClassEffects:
    """Fit an SEM on each consistent DAG (at most ``limit``) and summarise their total effects."""
    dags = graph.consistent_dags(limit=limit, seed=seed)
    totals = np.stack([fit_sem(dag, data, graph.nodes).total_effects() for dag in dags])
    return ClassEffects(graph.nodes, totals.mean(axis=0), totals.min(axis=0), totals.max(axis=0), len(dags))
