"""Reproduce the seed paper's Table 2 (SAE rows) from its own score matrices, over the protocol choices the
paper leaves open, and print markdown tables (docs/graph.md quotes them).

    .venv/bin/python scripts/paper_table2.py ../shared/paper [--out runs/paper-table2]

Needs the paper's files (ans_{gemma,llama}_{train,test}_formal.csv, table2_{gemma,llama}.csv). Builds each
model's graph with ``causalguard graph build`` (PC, no bootstrap, the paper's "good" SAE features only),
then computes the Table 2 statistic on the test matrix for every protocol in the grid and compares it
with the paper's, and runs ``graph evaluate`` (the held-out predictors) with targets from the training
matrix. About a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

GOOD_FEATURES = {
    "gemma": "14351,1025,2965,10096,1341,1975,10605,14049,1312,4752",
    "llama": "49202,58305,8546,12477,7754,9332,1897,62769,47207,54606",
}
THRESHOLDS = (0.0, 0.025, 0.05, 0.075, 0.1, 0.15)
ALPHAS = (0.01, 0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paper", type=Path, help="folder with the paper's CSV files")
    parser.add_argument("--out", type=Path, default=Path("runs/paper-table2"))
    args = parser.parse_args()
    from causalguard.bundle import load_bundle
    from causalguard.graphs.causal.change_rates import (
        ChangeRule,
        change_rate_table,
        compare_with_paper,
        largest_change_targets,
        read_paper_table,
    )
    from causalguard.graphs.causal.matrix import read_score_matrix

    args.out.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "causalguard.cli"]
    rules = [ChangeRule("threshold", threshold=t) for t in THRESHOLDS] + [ChangeRule("t_test", alpha=a) for a in ALPHAS]
    print(
        "| model | rows in | changed when | targets | expected (paper) | unexpected (paper) | "
        "mean abs. cell difference |"
    )
    print("|---|---|---|---|---|---|---|")
    for model, features in GOOD_FEATURES.items():
        bundle = args.out / model
        subprocess.run(
            [
                *cli,
                "graph",
                "build",
                str(args.paper / f"ans_{model}_train_formal.csv"),
                "--out",
                str(bundle),
                "--bootstrap",
                "0",
                "--steering-only",
                features,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        graph = load_bundle(bundle).graph
        paper = read_paper_table(args.paper / f"table2_{model}.csv")
        train = read_score_matrix(args.paper / f"ans_{model}_train_formal.csv")
        targets = largest_change_targets(train)
        test = read_score_matrix(args.paper / f"ans_{model}_test_formal.csv")
        for rows, only in (("good features", features.split(",")), ("all 24 features", None)):
            for rule in rules:
                for target_name, target_map in (("every changed value", None), ("largest on train", targets)):
                    table = change_rate_table(test, graph, rule, target_map=target_map, interventions=only)
                    cmp = compare_with_paper(table, paper)
                    means = cmp["means"]
                    print(
                        f"| {model} ({len(graph.edges)} edges) | {rows} | {rule.describe()} | {target_name} | "
                        f"{_f(means['expected']['ours'])} ({_f(means['expected']['paper'])}) | "
                        f"{_f(means['unexpected']['ours'])} ({_f(means['unexpected']['paper'])}) | "
                        f"{_f(cmp['mean_abs_difference'])} |"
                    )
        evaluated = args.out / f"evaluate-{model}.json"
        test_csv = str(args.paper / f"ans_{model}_test_formal.csv")
        subprocess.run(
            [
                *cli,
                "graph",
                "evaluate",
                str(bundle),
                "--test",
                test_csv,
                "--targets-from",
                str(args.paper / f"ans_{model}_train_formal.csv"),
                "--out",
                str(evaluated),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    print()
    print("| predictor | " + " | ".join(GOOD_FEATURES) + " |")
    print("|---|" + "---|" * len(GOOD_FEATURES))
    docs = {m: json.loads((args.out / f"evaluate-{m}.json").read_text()) for m in GOOD_FEATURES}
    for name in docs["gemma"]["predictors"]:
        cells = []
        for m in GOOD_FEATURES:
            row = docs[m]["predictors"].get(name, {})
            auroc = row.get("auroc")
            ci = row.get("auroc_ci")
            cells.append(_f(auroc) + (f" ({_f(ci[0])}-{_f(ci[1])})" if ci else ""))
        print(f"| {name} | " + " | ".join(cells) + " |")
    cells = []
    for m in GOOD_FEATURES:
        rep = docs[m]["reproducibility"]
        cells.append(f"{_f(rep['auroc'])} (r = {_f(rep['side_effect_correlation'])})" if rep else "-")
    print("| split-half reproducibility | " + " | ".join(cells) + " |")
    return 0


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
