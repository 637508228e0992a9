"""Bootstrap stability: how often each adjacency and each orientation reappears on resampled rows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from causalguard.graphs.causal.discovery import PCSettings, run_pc
from causalguard.graphs.causal.graph import Edge, ValueGraph


def mark(edge: Edge, a: str, b: str) -> str:
    """The edge's mark as seen from the ordered pair (a, b): 'a->b', 'b->a', 'a-b' or 'a<->b'."""
    if edge.kind == "undirected":
        return "---"
    if edge.kind == "bidirected":
        return "<->"
    return "-->" if (edge.source, edge.target) == (a, b) else "<--"


def _one(args: tuple[np.ndarray, Sequence[str], PCSettings]) -> ValueGraph:
    data, nodes, settings = args
    return run_pc(data, nodes, settings)


def resample_indices(rows: int, resamples: int, seed: int = 0) -> list[np.ndarray]:
    """Row indices of ``resamples`` bootstrap samples (with replacement), reproducible by seed."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, rows, rows) for _ in range(resamples)]


def bootstrap_graphs(
    data: np.ndarray, nodes: Sequence[str], settings: PCSettings, indices: Sequence[np.ndarray], *, workers: int = 1
) -> list[ValueGraph]:
    """PC on each bootstrap sample ``data[idx]``, in ``workers`` processes."""
    jobs = [(data[idx], list(nodes), settings) for idx in indices]
    if workers <= 1:
        return [_one(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_one, jobs, chunksize=max(1, len(jobs) // (workers * 4))))


def annotate_stability(graph: ValueGraph, samples: Sequence[ValueGraph]) -> ValueGraph:
    """Copy of ``graph`` whose edges carry adjacency and orientation frequencies over ``samples``."""
    edges = []
    for e in graph.edges:
        marks: Counter[str] = Counter()
        for sample in samples:
            found = sample.edge(e.source, e.target)
            if found is not None:
                marks[mark(found, e.source, e.target)] += 1
        total = len(samples)
        stability = round(sum(marks.values()) / total, 4) if total else None
        orientation = {k: round(v / total, 4) for k, v in sorted(marks.items())}
        edges.append(Edge(e.source, e.target, e.kind, stability=stability, orientation=orientation))
    return graph.with_edges(edges)


def edge_frequencies(samples: Sequence[ValueGraph]) -> dict[frozenset[str], float]:
    """Adjacency frequency of every pair seen in any sample (also pairs absent from the main graph)."""
    counts: Counter[frozenset[str]] = Counter(p for s in samples for p in s.skeleton())
    return {pair: c / len(samples) for pair, c in counts.items()} if samples else {}
