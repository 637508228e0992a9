"""Bootstrap stability: how often each adjacency and each orientation reappears on resampled rows, and
stability selection (the edges that reappear often enough ship)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from causalguard.bundle.graph import Edge, EdgeKind, ValueGraph, make_edge
from causalguard.graphs.causal.discovery import PCSettings, run_pc


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


def stable_graph(nodes: Sequence[str], samples: Sequence[ValueGraph], threshold: float) -> ValueGraph:
    """Stability selection: the edges whose adjacency appears in at least ``threshold`` of ``samples``.

    An edge's mark is the one most of its appearances carry, when more than half do: a directed mark
    gives a directed edge, ``<->`` a bidirected one; otherwise it stays undirected (the bootstraps did not
    agree on a direction, so none is claimed). Edges carry their adjacency and mark frequencies."""
    if not samples:
        raise ValueError("stability selection needs bootstrap graphs")
    pairs = sorted({tuple(sorted(p)) for s in samples for p in s.skeleton()})
    edges = []
    for a, b in pairs:
        marks: Counter[str] = Counter()
        for sample in samples:
            found = sample.edge(a, b)
            if found is not None:
                marks[mark(found, a, b)] += 1
        seen = sum(marks.values())
        if seen / len(samples) < threshold:
            continue
        top, count = marks.most_common(1)[0]
        orientation = {k: round(v / len(samples), 4) for k, v in sorted(marks.items())}
        stability = round(seen / len(samples), 4)
        majority = top if count * 2 > seen else "---"
        if majority in ("-->", "<--"):
            source, target = (a, b) if majority == "-->" else (b, a)
            edges.append(Edge(source, target, "directed", stability=stability, orientation=orientation))
        else:
            kind: EdgeKind = "bidirected" if majority == "<->" else "undirected"
            edges.append(make_edge(a, b, kind, stability=stability, orientation=orientation))
    return ValueGraph(tuple(nodes), tuple(edges))
