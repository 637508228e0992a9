"""PC and bootstrap speed on a 2,500 x 17 matrix (targets: PC < 5 s; 100 bootstraps < 2 min on 2 cores).

The matrix comes from a random sparse linear SEM (seeded), the size of the paper's score matrices.
Bootstrap arms (1 worker vs 2 workers) are interleaved; medians and the speed-up are printed.

    .venv/bin/python benchmarks/bench_graph.py [--repeats 3] [--bootstraps 100]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _timing import interleaved, machine, median

from causalguard.graphs.causal.bootstrap import bootstrap_graphs, resample_indices
from causalguard.graphs.causal.discovery import PCSettings, run_pc
from causalguard.graphs.causal.sem import class_total_effects


def sem_matrix(rows: int, variables: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    weights = np.triu(rng.normal(0, 0.6, (variables, variables)) * (rng.random((variables, variables)) < 0.2), 1)
    data = np.zeros((rows, variables))
    for j in range(variables):
        data[:, j] = data @ weights[:, j] + rng.normal(size=rows)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bootstraps", type=int, default=100)
    args = parser.parse_args()
    data = sem_matrix(2500, 17)
    nodes = [f"v{j}" for j in range(17)]
    settings = PCSettings()
    indices = resample_indices(len(data), args.bootstraps)
    pc_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        graph = run_pc(data, nodes, settings)
        pc_times.append(time.perf_counter() - start)
    start = time.perf_counter()
    effects = class_total_effects(graph, data)
    sem_time = time.perf_counter() - start
    times = interleaved(
        {
            "1 worker": lambda: bootstrap_graphs(data, nodes, settings, indices, workers=1),
            "2 workers": lambda: bootstrap_graphs(data, nodes, settings, indices, workers=2),
        },
        args.repeats,
    )
    print(f"machine: {machine()}; 2,500 x 17 matrix, {len(graph.edges)} edges found; medians of {args.repeats}")
    print(f"  PC once:                  {median(pc_times):6.3f} s   (target < 5 s)")
    print(f"  SEM effects over {effects.dags:3d} DAGs: {sem_time:6.3f} s")
    for name, t in times.items():
        print(f"  {args.bootstraps} bootstraps, {name}: {median(t):6.2f} s   (target < 120 s)")
    print(f"  speed-up of 2 workers: {median(times['1 worker']) / median(times['2 workers']):.2f}x")


if __name__ == "__main__":
    main()
