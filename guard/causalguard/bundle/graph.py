"""Our graph type: a CPDAG-style value graph with directed, undirected and bidirected edges.

PC returns an equivalence class, not a DAG. We keep that honestly: undirected edges (orientation not
identified) and bidirected edges (conflicting orientations, e.g. a latent common cause) stay marked.
``directed_view`` gives the paper's reading (every undirected or bidirected edge as two arrows), and
``consistent_dags`` the DAGs of the class, for effect estimation.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import networkx as nx

EdgeKind = Literal["directed", "undirected", "bidirected"]
ARROWS = {"directed": "-->", "undirected": "---", "bidirected": "<->"}


@dataclass(frozen=True)
class Edge:
    """``source --> target`` when directed; for the other kinds the order is alphabetical."""

    source: str
    target: str
    kind: EdgeKind
    stability: float | None = None  # share of bootstrap graphs with this adjacency
    orientation: dict[str, float] = field(default_factory=dict)  # share of each mark among those graphs

    def __str__(self) -> str:
        text = f"{self.source} {ARROWS[self.kind]} {self.target}"
        return text if self.stability is None else f"{text}  (stability {self.stability:.2f})"

    @property
    def pair(self) -> frozenset[str]:
        return frozenset((self.source, self.target))


def make_edge(a: str, b: str, kind: EdgeKind, **extra: Any) -> Edge:
    if kind != "directed" and b < a:
        a, b = b, a
    return Edge(a, b, kind, **extra)


@dataclass(frozen=True)
class ValueGraph:
    nodes: tuple[str, ...]
    edges: tuple[Edge, ...]

    def __post_init__(self) -> None:
        unknown = {n for e in self.edges for n in (e.source, e.target)} - set(self.nodes)
        if unknown:
            raise ValueError(f"edges mention unknown nodes: {sorted(unknown)}")
        pairs = [e.pair for e in self.edges]
        if len(pairs) != len(set(pairs)):
            raise ValueError("at most one edge per pair of nodes")

    def edge(self, a: str, b: str) -> Edge | None:
        return next((e for e in self.edges if e.pair == frozenset((a, b))), None)

    def skeleton(self) -> set[frozenset[str]]:
        return {e.pair for e in self.edges}

    def parents(self, node: str) -> list[str]:
        return [e.source for e in self.edges if e.kind == "directed" and e.target == node]

    def directed_view(self) -> nx.DiGraph:
        """Every undirected or bidirected edge as two arrows (the paper's reading)."""
        graph = nx.DiGraph()
        graph.add_nodes_from(self.nodes)
        for e in self.edges:
            graph.add_edge(e.source, e.target)
            if e.kind != "directed":
                graph.add_edge(e.target, e.source)
        return graph

    def descendants(self, node: str) -> set[str]:
        return set(nx.descendants(self.directed_view(), node))

    def with_edges(self, edges: Iterable[Edge]) -> ValueGraph:
        return replace(self, edges=tuple(edges))

    def consistent_dags(self, limit: int = 256, seed: int = 0) -> list[nx.DiGraph]:
        """DAGs in the class: orient every non-directed edge without cycles or new v-structures.

        Enumerates all orientations when there are at most 12 such edges, else samples ``limit``
        random ones. Bidirected edges are oriented either way (a latent cause cannot be fitted
        here); if no orientation is consistent, the acyclic ones are returned instead, and if none is
        acyclic (a directed cycle in the marks), one fallback DAG.
        """
        fixed = [(e.source, e.target) for e in self.edges if e.kind == "directed"]
        free = [(e.source, e.target) for e in self.edges if e.kind != "directed"]
        colliders = _v_structures(self.nodes, fixed + free, fixed)
        found: list[nx.DiGraph] = []
        acyclic: list[nx.DiGraph] = []
        for flips in _orientations(len(free), limit, seed):
            dag = nx.DiGraph()
            dag.add_nodes_from(self.nodes)
            dag.add_edges_from(fixed)
            dag.add_edges_from((b, a) if flip else (a, b) for (a, b), flip in zip(free, flips, strict=True))
            if not nx.is_directed_acyclic_graph(dag):
                continue
            acyclic.append(dag)
            if _dag_v_structures(dag) <= colliders:
                found.append(dag)
            if len(found) >= limit:
                break
        return found or acyclic[:limit] or [self._fallback_dag()]

    def _fallback_dag(self) -> nx.DiGraph:
        """One DAG when the marks contain a directed cycle (PC can orient conflicting arrows so):
        every edge is oriented along a topological order of the strongly connected components of
        the directed edges, ties broken by node order."""
        directed = nx.DiGraph()
        directed.add_nodes_from(self.nodes)
        directed.add_edges_from((e.source, e.target) for e in self.edges if e.kind == "directed")
        condensed = nx.condensation(directed)
        rank: dict[str, tuple[int, int]] = {}
        for position, component in enumerate(nx.topological_sort(condensed)):
            for node in condensed.nodes[component]["members"]:
                rank[node] = (position, self.nodes.index(node))
        dag = nx.DiGraph()
        dag.add_nodes_from(self.nodes)
        dag.add_edges_from((a, b) if rank[a] < rank[b] else (b, a) for a, b in (tuple(e.pair) for e in self.edges))
        return dag

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": list(self.nodes),
            "edges": [
                {
                    "source": e.source,
                    "target": e.target,
                    "kind": e.kind,
                    "stability": e.stability,
                    "orientation": e.orientation,
                }
                for e in self.edges
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ValueGraph:
        return cls(
            nodes=tuple(data["nodes"]),
            edges=tuple(
                Edge(e["source"], e["target"], e["kind"], e.get("stability"), dict(e.get("orientation") or {}))
                for e in data["edges"]
            ),
        )


def _orientations(k: int, limit: int, seed: int) -> Iterator[tuple[bool, ...]]:
    if k <= 12:
        yield from itertools.product((False, True), repeat=k)
        return
    rng = random.Random(seed)
    for _ in range(limit * 8):
        yield tuple(rng.random() < 0.5 for _ in range(k))


def _v_structures(nodes: tuple[str, ...], all_pairs: list[tuple[str, str]], directed: list[tuple[str, str]]) -> set:
    adjacent = {frozenset(p) for p in all_pairs}
    out = set()
    for (a, c), (b, d) in itertools.combinations(directed, 2):
        if c == d and a != b and frozenset((a, b)) not in adjacent:
            out.add((frozenset((a, b)), c))
    return out


def _dag_v_structures(dag: nx.DiGraph) -> set:
    out = set()
    for node in dag.nodes:
        for a, b in itertools.combinations(sorted(dag.predecessors(node)), 2):
            if not dag.has_edge(a, b) and not dag.has_edge(b, a):
                out.add((frozenset((a, b)), node))
    return out
