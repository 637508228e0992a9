"""`graph build` speed on the default model's matrix (target: 100 bootstraps < 2 min on 2 cores).

By default the matrix is the shipped SmolLM2 bundle's own rows (``data/survey.csv`` and
``data/interventions.csv``: 81 survey rows and 12 personas x 81 conditions, 10 values, 21 context
columns); ``--synthetic`` uses a seeded random linear SEM of the same shape instead (80 levers grouped
into 20 target-direction contexts, each pushing its target). Prints medians of:

- one PC run on values + context columns: causal-learn's stock ``fisherz`` test (the baseline) against
  ours (``discovery.FAST_FISHERZ``, the same statistic), interleaved;
- the whole discovery of ``graph build`` (100 bootstraps on 2 workers, stability selection, effects;
  no evaluation) on the 10 value columns alone and with the context columns.

    .venv/bin/python benchmarks/bench_graph_build.py [--repeats 3] [--bootstraps 100] [--synthetic]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from _timing import interleaved, machine, median

from causalguard.graphs.causal.bootstrap import bootstrap_graphs, resample_indices, stable_graph
from causalguard.graphs.causal.discovery import Knowledge, PCSettings, run_pc
from causalguard.graphs.causal.sem import class_total_effects

VALUES = 10


def joint_matrix(seed: int = 0) -> tuple[np.ndarray, list[str], tuple[str, ...]]:
    rng = np.random.default_rng(seed)
    weights = np.triu(rng.normal(0, 0.5, (VALUES, VALUES)) * (rng.random((VALUES, VALUES)) < 0.3), 1)
    contexts = tuple(f"do:v{v}:{sign}" for v in range(VALUES) for sign in "+-")
    per_persona = [-1, *(lever % len(contexts) for lever in range(80))]  # unsteered, then 80 levers in 20 contexts
    labels = [-1] * 81 + per_persona * 12
    rows = len(labels)
    indicators = np.zeros((rows, len(contexts)))
    data = np.zeros((rows, VALUES))
    push = np.zeros((rows, VALUES))
    for r, label in enumerate(labels):
        if label >= 0:
            indicators[r, label] = 1.0
            push[r, label // 2] = 0.8 if label % 2 == 0 else -0.8
    for j in range(VALUES):
        data[:, j] = data @ weights[:, j] + push[:, j] + rng.normal(size=rows)
    return np.hstack([data, indicators]), [f"v{j}" for j in range(VALUES)] + list(contexts), contexts


def shipped_matrix() -> tuple[np.ndarray, list[str], tuple[str, ...]]:
    """The shipped SmolLM2 bundle's joint matrix, as ``graph build --interventions`` assembles it."""
    from causalguard.bundle.format import load_bundle, shipped_bundle_dir
    from causalguard.graphs.causal.contexts import joint_matrix as assemble
    from causalguard.graphs.causal.matrix import read_score_matrix

    bundle = load_bundle(shipped_bundle_dir("smollm2-135m-instruct"))
    assert bundle.path is not None
    survey = read_score_matrix(bundle.path / "data" / "survey.csv")
    steered = read_score_matrix(bundle.path / "data" / "interventions.csv")
    data, names, contexts = assemble(survey, steered, list(bundle.effects.nodes), bundle.catalog).data()
    return data, names, contexts


def stock_pc(data: np.ndarray, names: list[str], contexts: tuple[str, ...]) -> None:
    """causal-learn's PC with its own fisherz test and the same tiers: the baseline."""
    from causallearn.graph.GraphNode import GraphNode
    from causallearn.search.ConstraintBased.PC import pc
    from causallearn.utils.PCUtils.BackgroundKnowledge import BackgroundKnowledge

    nodes = {name: GraphNode(name) for name in names}
    background = BackgroundKnowledge()
    for name in names:
        background.add_node_to_tier(nodes[name], 0 if name in contexts else 1)
    background.forbid_within_tier(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pc(data, 0.05, "fisherz", background_knowledge=background, show_progress=False, node_names=names)


def build(data: np.ndarray, names: list[str], settings: PCSettings, bootstraps: int) -> int:
    indices = resample_indices(len(data), bootstraps)
    samples = bootstrap_graphs(data, names, settings, indices, workers=2)
    graph = stable_graph(names, samples, 0.5)
    class_total_effects(graph, data)
    for g, idx in zip(samples, indices, strict=True):
        class_total_effects(g, data[idx], limit=8)
    return len(graph.edges)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bootstraps", type=int, default=100)
    parser.add_argument("--synthetic", action="store_true", help="a seeded random SEM instead of the shipped rows")
    args = parser.parse_args()
    data, names, contexts = joint_matrix() if args.synthetic else shipped_matrix()
    joint = PCSettings(knowledge=Knowledge(sources_only=contexts))
    run_pc(data[:, :VALUES], names[:VALUES])  # imports causal-learn outside the timings
    pc_times = interleaved(
        {
            "stock fisherz": lambda: stock_pc(data, names, contexts),
            "causalguard fisherz": lambda: run_pc(data, names, joint),
        },
        args.repeats,
    )
    build_times: dict[str, list[float]] = {"10 values": [], f"10 values + {len(contexts)} contexts": []}
    edges: dict[str, int] = {}
    for _ in range(args.repeats):
        for name, (columns, settings) in zip(build_times, [(VALUES, PCSettings()), (len(names), joint)], strict=True):
            start = time.perf_counter()
            edges[name] = build(data[:, :columns], names[:columns], settings, args.bootstraps)
            build_times[name].append(time.perf_counter() - start)
    what = "synthetic SEM" if args.synthetic else "the shipped SmolLM2 rows"
    print(
        f"machine: {machine()}; {what}: {len(data)} rows x {VALUES} values (+ {len(contexts)} context columns); "
        f"medians of {args.repeats}"
    )
    stock, ours = median(pc_times["stock fisherz"]), median(pc_times["causalguard fisherz"])
    print(f"  one PC run, values + contexts: stock fisherz {stock:6.2f} s, ours {ours:6.2f} s ({stock / ours:.1f}x)")
    for name, times in build_times.items():
        print(
            f"  discovery, {args.bootstraps} bootstraps on 2 workers, {name}: {median(times):6.1f} s "
            f"({edges[name]} edges selected; target < 120 s)"
        )


if __name__ == "__main__":
    main()
