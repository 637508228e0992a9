"""PC discovery through causal-learn, wrapped behind one typed function that returns a ValueGraph.

The Fisher-z test is causal-learn's own statistic, registered under ``FAST_FISHERZ`` with a cheaper
cache key, ``erfc`` for the normal tail (scipy's per-call ``norm.cdf`` was 60% of PC's time on a
matrix with intervention indicators) and the partial correlation from one inverse per conditioning set
(a 2 x 2 Schur complement per test instead of a fresh inverse). The p-values equal causal-learn's
``fisherz`` to rounding.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from causalguard.bundle.graph import Edge, EdgeKind, ValueGraph, make_edge


@dataclass(frozen=True)
class Knowledge:
    """Background knowledge: forbidden and required directed edges, and source-only nodes.

    ``sources_only`` nodes (e.g. steering-condition indicator columns, the paper's variant) may have
    edges out but never in.
    """

    forbidden: tuple[tuple[str, str], ...] = ()
    required: tuple[tuple[str, str], ...] = ()
    sources_only: tuple[str, ...] = ()

    def check(self, nodes: Sequence[str]) -> None:
        known = set(nodes)
        named = {n for pair in self.forbidden + self.required for n in pair} | set(self.sources_only)
        unknown = sorted(named - known)
        if unknown:
            raise ValueError(f"background knowledge names unknown variables: {', '.join(unknown)}")


@dataclass(frozen=True)
class PCSettings:
    alpha: float = 0.05
    max_depth: int | None = None  # largest conditioning set; None = unlimited
    stable: bool = True
    knowledge: Knowledge = field(default_factory=Knowledge)

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.max_depth is not None and self.max_depth < 0:
            raise ValueError("max_depth must be >= 0")


FAST_FISHERZ = "causalguard_fisherz"
SINGULAR = "Data correlation matrix is singular. Cannot run fisherz test. Please check your data."  # causal-learn's


def _register_fast_fisherz() -> str:
    """Register the Fisher-z test below with causal-learn (idempotent; called on first use, not at import)."""
    from causallearn.utils import cit

    if FAST_FISHERZ in cit._custom_ci_tests:
        return FAST_FISHERZ

    class FastFisherZ(cit.FisherZ):
        """causal-learn's Fisher-z partial-correlation test, keyed by tuples, with one inverse per conditioning
        set (PC tests many pairs given the same set) and erfc for the tail."""

        def __init__(self, data: np.ndarray, **kwargs: Any) -> None:
            super().__init__(data, **kwargs)
            self.given_inverses: dict[tuple[int, ...], np.ndarray] = {}

        def __call__(self, X: int, Y: int, condition_set: Sequence[int] | None = None) -> float:
            x, y = (int(X), int(Y)) if X < Y else (int(Y), int(X))
            given = tuple(sorted({int(c) for c in condition_set or ()}))
            key = (x, y, given)
            cached: float | None = self.pvalue_cache.get(key)
            if cached is not None:
                return cached
            r = self.partial_correlation(x, y, given)
            r = max(min(r, 1.0 - 1e-15), -1.0 + 1e-15)
            z = 0.5 * math.log((1 + r) / (1 - r))
            dof = self.sample_size - len(given) - 3
            # fewer rows than the conditioning set needs: causal-learn's p-value is NaN (never "independent")
            # where math.sqrt would raise
            p = math.erfc(math.sqrt(dof) * abs(z) / math.sqrt(2.0)) if dof >= 0 else math.nan
            self.pvalue_cache[key] = p
            return p

        def partial_correlation(self, x: int, y: int, given: tuple[int, ...]) -> float:
            """corr(x, y | given) from the Schur complement of the conditioning block: the same number as
            causal-learn's ``-inv[0, 1] / sqrt(inv[0, 0] * inv[1, 1])`` of the (x, y, given) block."""
            c = self.correlation_matrix
            if not given:
                return float(c[x, y])
            inverse = self.given_inverses.get(given)
            if inverse is None:
                try:
                    inverse = self.given_inverses[given] = np.linalg.inv(c[np.ix_(given, given)])
                except np.linalg.LinAlgError:
                    raise ValueError(SINGULAR) from None
            bx, by = c[x, given], c[y, given]
            ix, iy = inverse @ bx, inverse @ by
            xx, yy = c[x, x] - bx @ ix, c[y, y] - by @ iy
            if xx * yy <= 0:
                raise ValueError(SINGULAR)
            return float((c[x, y] - bx @ iy) / math.sqrt(xx * yy))

        def __deepcopy__(self, memo: dict[int, object]) -> FastFisherZ:
            # PC's collider step deep-copies its graph, test included: share the test and its p-value
            # cache (tens of thousands of entries) instead of copying them
            return self

    cit.register_ci_test(FAST_FISHERZ, FastFisherZ)
    return FAST_FISHERZ


def run_pc(data: np.ndarray, nodes: Sequence[str], settings: PCSettings = PCSettings()) -> ValueGraph:
    """PC with Fisher-z tests on ``data`` (rows = conditions, columns = ``nodes``). Source-only nodes go
    in a first tier with no edges inside it: nothing causes them, and they do not cause each other."""
    from causallearn.graph.GraphNode import GraphNode
    from causallearn.search.ConstraintBased.PC import pc
    from causallearn.utils.PCUtils.BackgroundKnowledge import BackgroundKnowledge

    settings.knowledge.check(nodes)
    background = None
    k = settings.knowledge
    if k.forbidden or k.required or k.sources_only:
        graph_nodes = {name: GraphNode(name) for name in nodes}
        background = BackgroundKnowledge()
        for a, b in k.forbidden:
            background.add_forbidden_by_node(graph_nodes[a], graph_nodes[b])
        for a, b in k.required:
            background.add_required_by_node(graph_nodes[a], graph_nodes[b])
        if k.sources_only:
            sources = set(k.sources_only)
            for name in nodes:
                background.add_node_to_tier(graph_nodes[name], 0 if name in sources else 1)
            background.forbid_within_tier(0)
    test = _register_fast_fisherz()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = pc(
            np.asarray(data, dtype=float),
            settings.alpha,
            test,
            stable=settings.stable,
            background_knowledge=background,
            show_progress=False,
            node_names=list(nodes),
            max_k=settings.max_depth,
        )
    return decode(result.G.graph, nodes)


def decode(matrix: np.ndarray, nodes: Sequence[str]) -> ValueGraph:
    """causal-learn's endpoint matrix -> edges. G[i,j] = -1 and G[j,i] = 1 means i --> j;
    both -1 means i --- j; both 1 means i <-> j."""
    edges: list[Edge] = []
    n = len(nodes)
    for i in range(n):
        for j in range(i + 1, n):
            a, b = int(matrix[i, j]), int(matrix[j, i])
            if a == 0 and b == 0:
                continue
            kind: EdgeKind
            if a == -1 and b == 1:
                edges.append(make_edge(nodes[i], nodes[j], "directed"))
                continue
            if a == 1 and b == -1:
                edges.append(make_edge(nodes[j], nodes[i], "directed"))
                continue
            kind = "undirected" if (a, b) == (-1, -1) else "bidirected"
            edges.append(make_edge(nodes[i], nodes[j], kind))
    return ValueGraph(tuple(nodes), tuple(edges))
