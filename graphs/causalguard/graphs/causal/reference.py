"""Reference structures and comparisons: Schwartz's circumplex, reference graph files, graph diffs."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from causalguard.bundle.graph import Edge, ValueGraph, make_edge
from causalguard.errors import ConfigError

# Schwartz's circle (BRIEF section 7): conformity and tradition share a wedge, so 9 angular positions.
CIRCUMPLEX_ANGLES = {
    "self_direction": 0.0,
    "stimulation": 40.0,
    "hedonism": 80.0,
    "achievement": 120.0,
    "power": 160.0,
    "security": 200.0,
    "conformity": 240.0,
    "tradition": 240.0,
    "benevolence": 280.0,
    "universalism": 320.0,
}
CIRCUMPLEX_RING = [
    ("self_direction", "stimulation"),
    ("stimulation", "hedonism"),
    ("hedonism", "achievement"),
    ("achievement", "power"),
    ("power", "security"),
    ("security", "conformity"),
    ("security", "tradition"),
    ("conformity", "tradition"),
    ("conformity", "benevolence"),
    ("tradition", "benevolence"),
    ("benevolence", "universalism"),
    ("universalism", "self_direction"),
]


def circumplex_graph(nodes: Sequence[str]) -> ValueGraph:
    """The adjacency ring of the circumplex restricted to ``nodes`` (undirected edges)."""
    keep = set(nodes)
    edges = [make_edge(a, b, "undirected") for a, b in CIRCUMPLEX_RING if a in keep and b in keep]
    return ValueGraph(tuple(nodes), tuple(edges))


def circumplex_pattern(nodes: Sequence[str]) -> np.ndarray | None:
    """Expected correlation pattern cos(angle_i - angle_j); None unless every node is a Schwartz value."""
    if not all(n in CIRCUMPLEX_ANGLES for n in nodes):
        return None
    angles = np.radians([CIRCUMPLEX_ANGLES[n] for n in nodes])
    return np.cos(angles[:, None] - angles[None, :])


def read_reference(path: Path) -> ValueGraph:
    """A reference graph from GraphML or our JSON (``{"nodes": [...], "edges": [...]}``)."""
    if not path.exists():
        raise ConfigError.single(str(path), "file not found")
    if path.suffix.lower() == ".graphml":
        g = nx.read_graphml(path)
        directed = g.is_directed()
        edges = [make_edge(str(a), str(b), "directed" if directed else "undirected") for a, b in g.edges]
        return ValueGraph(tuple(str(n) for n in g.nodes), tuple(edges))
    try:
        data = json.loads(path.read_text())
        graph_data = data.get("graph", data)
        return ValueGraph.from_json(graph_data)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError.single(
            str(path),
            f"not a GraphML or causalguard graph JSON file ({exc})",
            hint="use .graphml, or JSON with 'nodes' and 'edges'",
        ) from None


def skeleton_scores(model: ValueGraph, reference: ValueGraph) -> dict[str, Any]:
    """Skeleton precision, recall and SHD against ``reference`` over their shared nodes.

    SHD counts missing and extra adjacencies, plus orientation mismatches where both graphs have a
    directed edge on the same pair.
    """
    shared = set(model.nodes) & set(reference.nodes)
    mine = {p for p in model.skeleton() if p <= shared}
    ref = {p for p in reference.skeleton() if p <= shared}
    hits = mine & ref
    reversed_edges = 0
    for pair in hits:
        a, b = sorted(pair)
        e1, e2 = model.edge(a, b), reference.edge(a, b)
        if e1 and e2 and e1.kind == e2.kind == "directed" and (e1.source, e1.target) != (e2.source, e2.target):
            reversed_edges += 1
    return {
        "nodes": len(shared),
        "model_edges": len(mine),
        "reference_edges": len(ref),
        "shared_edges": len(hits),
        "precision": round(len(hits) / len(mine), 4) if mine else None,
        "recall": round(len(hits) / len(ref), 4) if ref else None,
        "shd": len(mine ^ ref) + reversed_edges,
    }


def mantel(a: np.ndarray, b: np.ndarray, *, permutations: int = 9999, seed: int = 0) -> tuple[float, float]:
    """Correlation of two symmetric matrices' upper triangles and its label-permutation p-value."""
    n = a.shape[0]
    upper = np.triu_indices(n, 1)
    r = float(np.corrcoef(a[upper], b[upper])[0, 1])
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(permutations):
        perm = rng.permutation(n)
        shuffled = a[np.ix_(perm, perm)]
        if abs(np.corrcoef(shuffled[upper], b[upper])[0, 1]) >= abs(r) - 1e-12:
            hits += 1
    return r, (hits + 1) / (permutations + 1)


def compare_with_reference(
    model: ValueGraph, correlation: np.ndarray, reference: ValueGraph | None = None, *, permutations: int = 9999
) -> dict[str, Any]:
    """Skeleton scores against ``reference`` (default: the circumplex ring, only when every value is a
    Schwartz value) and, for Schwartz values, the Mantel correlation between the model's value
    correlations and the circumplex cosine pattern. Other inventories without a reference get
    ``{"reference": None}``: there is nothing to compare with."""
    if reference is None and circumplex_pattern(model.nodes) is None:
        return {"reference": None, "reason": "no reference for this inventory (give one with --reference)"}
    ref = reference or circumplex_graph(model.nodes)
    out: dict[str, Any] = {
        "reference": "schwartz-circumplex" if reference is None else "file",
        "skeleton": skeleton_scores(model, ref),
    }
    pattern = circumplex_pattern(model.nodes)
    if pattern is not None:
        r, p = mantel(correlation, pattern, permutations=permutations)
        out["circumplex_correlation"] = {"r": round(r, 4), "p_value": round(p, 4), "permutations": permutations}
    return out


def diff_graphs(old: ValueGraph, new: ValueGraph) -> dict[str, list[str]]:
    """Edges gained, lost, reversed and re-marked from ``old`` to ``new``."""
    gained, lost, reversed_edges, remarked = [], [], [], []
    for e in new.edges:
        before = old.edge(e.source, e.target)
        if before is None:
            gained.append(str(_plain(e)))
        elif before.kind == e.kind == "directed" and before.source != e.source:
            reversed_edges.append(f"{_plain(before)}  =>  {_plain(e)}")
        elif before.kind != e.kind:
            remarked.append(f"{_plain(before)}  =>  {_plain(e)}")
    lost = [str(_plain(e)) for e in old.edges if new.edge(e.source, e.target) is None]
    return {"gained": gained, "lost": lost, "reversed": reversed_edges, "remarked": remarked}


def _plain(edge: Edge) -> Edge:
    return Edge(edge.source, edge.target, edge.kind)


def angle_distance(a: str, b: str) -> float:
    return abs(math.remainder(CIRCUMPLEX_ANGLES[a] - CIRCUMPLEX_ANGLES[b], 360.0))
