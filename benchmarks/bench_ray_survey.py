"""A survey on Ray vs in this process: wall time, per-actor throughput, and a capacity plan from it.

    .venv/bin/python benchmarks/bench_ray_survey.py [--conditions 40] [--actors 2] [--rounds 1] [--threads 1]

Runs the same survey (the default model, the shipped inventory, baseline plus personas: ``--conditions``
conditions) with the local backend and with ``--actors`` Ray actors on a local cluster, in turn, each
into a fresh folder. Prints the median wall time of each arm (Ray's includes starting the cluster's
actors and loading the model in each), the ratio, whether the two ``scores.csv`` are identical, the
actors' own items per second, and what that throughput means for a larger survey on more actors
(assuming actors scale linearly, which they do when each has its own cores or GPU: conditions never
wait on each other).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _timing import machine


def main() -> None:
    import json

    import ray

    from causalguard.graphs.ray_pool import RayOptions
    from causalguard.graphs.survey.backends import LocalBackend
    from causalguard.graphs.survey.conditions import build_conditions, standard_roles
    from causalguard.graphs.survey.ray_backend import RayBackend
    from causalguard.graphs.survey.runner import run_survey
    from causalguard.graphs.survey.settings import SurveySettings
    from causalguard.models import load_model
    from causalguard.values.loading import load_inventory

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conditions", type=int, default=40)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per actor; default: the driver's (identical scores, but 2 actors x 2 "
        "threads oversubscribe 2 cores); 1 here is the fast setting",
    )
    args = parser.parse_args()
    lm = load_model("smollm2-135m-instruct")
    inventory = load_inventory("schwartz-basic-10")
    items = len(list(inventory.items()))
    conditions = build_conditions(
        standard_roles(inventory, personas=args.conditions - 1, include_value_roles=False, include_anchors=False)
    )
    settings = SurveySettings(method="statement")
    ray.init(include_dashboard=False, configure_logging=False, log_to_driver=False)
    times: dict[str, list[float]] = {"local": [], "ray": []}
    scores: dict[str, bytes] = {}
    workers: dict[str, dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for round_ in range(args.rounds):
                for name in times:
                    out = Path(tmp) / f"{name}-{round_}"
                    options = RayOptions(actors=args.actors, threads=args.threads)
                    backend = LocalBackend() if name == "local" else RayBackend(options)
                    start = time.perf_counter()
                    run_survey(lm, inventory, conditions, settings, out, progress=False, backend=backend)
                    times[name].append(time.perf_counter() - start)
                    scores[name] = (out / "scores.csv").read_bytes()
                    if name == "ray":
                        workers = json.loads((out / "run.json").read_text())["timing"]["workers"]
    finally:
        ray.shutdown()
    local, distributed = statistics.median(times["local"]), statistics.median(times["ray"])
    print(f"machine: {machine()}")
    threads = args.threads or "the driver's"
    print(
        f"survey: {len(conditions)} conditions x {items} items, statement method, {args.rounds} round(s), "
        f"{threads} torch threads per actor"
    )
    print(f"  local:            {local:7.1f} s ({len(conditions) * items / local:.1f} items/s)")
    rate = len(conditions) * items / distributed
    identical = scores["local"] == scores["ray"]
    print(
        f"  ray, {args.actors} actors:    {distributed:7.1f} s ({rate:.1f} items/s); ray / local "
        f"{distributed / local:.2f}x time; scores.csv identical: {identical}"
    )
    rates = [w["items_per_second"] for w in workers.values() if w["items_per_second"]]
    for worker, figures in workers.items():
        print(
            f"    actor {worker}: {figures['conditions']} conditions, {figures['items_per_second']} items/s "
            "while scoring"
        )
    per_actor = statistics.median(rates)
    print(
        f"  per-actor throughput here: {per_actor:.1f} items/s; scale: a survey of C conditions x I items on N "
        f"such actors takes about C*I / ({per_actor:.1f} * N) s plus one model load per actor"
    )


if __name__ == "__main__":
    main()
