"""The paper's Table 2 statistic: when an intervention changes a value, how often do that value's graph
descendants change, against the other values?

Kang et al. (ACL Findings 2025) report, per target value X, the mean *change rate* of X's descendants in
the learned graph ("expected") and of every other value ("unexpected"). The analysis code behind the
table is not published, so the steps are options here, each one a choice the paper's text leaves open:

- **unit**: one intervention (an SAE feature or a role), its change per value = the mean over personas of
  steered minus the same persona unsteered;
- **changed** (``ChangeRule``): a value changed when ``|mean change| > threshold`` (``threshold``), or
  when a two-sided paired t-test over the personas has ``p < alpha`` (``t_test``);
- **targets**: an intervention that names a value (the paper's role rows, our levers) targets that
  value; an SAE feature targets either every value it changed (``"changed"``) or the values a map
  gives (``target_map``, e.g. the largest change on the *training* matrix, ``largest_change_targets``);
- the rate of X is pooled over the interventions that target X and changed X (the same as the mean of
  their per-intervention rates, since each has the same descendants).

Descendants are read with undirected and bidirected edges as two arrows (``ValueGraph.descendants``);
a transitive reduction, which the paper takes, keeps reachability and so changes no descendant set.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from causalguard.bundle.graph import ValueGraph
from causalguard.errors import ConfigError
from causalguard.graphs.causal.contexts import id_layout, is_unsteered
from causalguard.graphs.causal.matrix import ScoreMatrix
from causalguard.values.loading import slug


@dataclass(frozen=True)
class ChangeRule:
    """When a value counts as changed by an intervention."""

    kind: Literal["threshold", "t_test"] = "threshold"
    threshold: float = 0.0  # |mean change| above this (kind "threshold")
    alpha: float = 0.05  # two-sided paired t-test (kind "t_test")

    def changed(self, changes: np.ndarray) -> np.ndarray:
        """Per value (column of ``changes``, personas x values): did it change?"""
        mean = changes.mean(axis=0)
        if self.kind == "threshold":
            return np.abs(mean) > self.threshold
        from scipy.stats import ttest_1samp

        if len(changes) < 2:
            return np.zeros(changes.shape[1], dtype=bool)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # constant changes: scipy's precision warning
            p = np.nan_to_num(ttest_1samp(changes, 0.0, axis=0).pvalue, nan=1.0)
        return p < self.alpha

    def describe(self) -> str:
        return (
            f"|mean change| > {self.threshold:g}" if self.kind == "threshold" else f"paired t-test p < {self.alpha:g}"
        )


def paired_changes(matrix: ScoreMatrix) -> dict[str, np.ndarray]:
    """Per intervention label: steered minus the same persona unsteered (personas x values), over the
    personas that have both rows."""
    steer_col, persona_col = id_layout(matrix)
    unsteered: dict[str, int] = {}
    steered: dict[str, dict[str, int]] = {}
    for i, info in enumerate(matrix.row_info):
        label = intervention_label(info.get(steer_col, ""))
        persona = info.get(persona_col, "").split("|")[0].strip()
        if is_unsteered(label):
            unsteered.setdefault(persona, i)
        else:
            steered.setdefault(label, {}).setdefault(persona, i)
    out = {}
    for label, rows in steered.items():
        pairs = [(i, unsteered[p]) for p, i in rows.items() if p in unsteered]
        if pairs:
            out[label] = np.array([matrix.values[i] - matrix.values[j] for i, j in pairs])
    if not out:
        raise ConfigError.single(
            "--test",
            "no steered row has an unsteered row of the same persona",
            hint="the matrix needs unsteered rows (empty steer_dim or 'none') per persona",
        )
    return out


def intervention_label(text: str) -> str:
    """The paper writes SAE features as floats ('14351.0'); compare them as integers."""
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if math.isfinite(number) and number.is_integer() else text


def largest_change_targets(matrix: ScoreMatrix) -> dict[str, str]:
    """Per intervention of ``matrix`` (typically the *training* matrix), the value it changed most (largest
    |mean paired change|): a target for SAE features, which name no value."""
    return {
        label: matrix.columns[int(np.argmax(np.abs(changes.mean(axis=0))))]
        for label, changes in paired_changes(matrix).items()
    }


def change_rate_table(
    matrix: ScoreMatrix,
    graph: ValueGraph,
    rule: ChangeRule,
    *,
    target_map: Mapping[str, str] | None = None,
    interventions: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Per target value: the change rate of its descendants ("expected") and of the other values
    ("unexpected"), over the interventions that target it and changed it; ``None`` where there is no such
    intervention or no such value. ``interventions`` keeps only those labels (default: all)."""
    nodes = list(graph.nodes)
    missing = [v for v in nodes if v not in matrix.columns]
    if missing:
        raise ConfigError.single(
            "--test",
            f"the matrix lacks the graph's value(s) {', '.join(missing)}",
            hint=f"its value columns are: {', '.join(matrix.columns)}",
        )
    order = [matrix.columns.index(v) for v in nodes]
    changes = paired_changes(matrix)
    if interventions is not None:
        wanted = {intervention_label(x) for x in interventions}
        changes = {k: v for k, v in changes.items() if k in wanted}
    descendants = {v: graph.descendants(v) for v in nodes}
    hits = {v: {"expected": [0, 0], "unexpected": [0, 0]} for v in nodes}  # [changed, total] per kind
    targeted = dict.fromkeys(nodes, 0)
    for label, rows in changes.items():
        changed = rule.changed(rows[:, order])
        named = slug(label)
        if named in nodes:
            targets = [named]
        elif target_map is not None:
            targets = [target_map[label]] if label in target_map else []
        else:
            targets = [v for v, c in zip(nodes, changed, strict=True) if c]
        for x in targets:
            if not changed[nodes.index(x)]:
                continue
            targeted[x] += 1
            for v, c in zip(nodes, changed, strict=True):
                if v != x:
                    bucket = hits[x]["expected" if v in descendants[x] else "unexpected"]
                    bucket[0] += int(c)
                    bucket[1] += 1
    per_value = {
        v: {
            "expected": _rate(hits[v]["expected"]),
            "unexpected": _rate(hits[v]["unexpected"]),
            "interventions": targeted[v],
            "descendants": len(descendants[v]),
        }
        for v in nodes
    }
    expected: list[float | None] = [_rate(hits[v]["expected"]) for v in nodes]
    unexpected: list[float | None] = [_rate(hits[v]["unexpected"]) for v in nodes]
    return {
        "rule": rule.describe(),
        "targets": "named or mapped" if target_map is not None else "every changed value",
        "interventions": len(changes),
        "per_value": per_value,
        "mean_expected": _mean(expected),
        "mean_unexpected": _mean(unexpected),
    }


def _rate(pair: list[int]) -> float | None:
    return pair[0] / pair[1] if pair[1] else None


def _mean(rates: Sequence[float | None]) -> float | None:
    kept = [r for r in rates if r is not None]
    return float(np.mean(kept)) if kept else None


def read_paper_table(
    path: Path, method: Literal["sae", "prompt"] = "sae", graph: Literal["ours", "refs"] = "ours"
) -> dict[str, dict[str, float | None]]:
    """The paper's Table 2 CSV (``table2_{gemma,llama}.csv``): per value, its expected and unexpected rate
    for ``method`` with the learned (``ours``) or reference (``refs``) graph; None where the cell is empty."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows or len(rows[0]) < 2:
        raise ConfigError.single(
            str(path), "not a Table 2 CSV (a header of value names, then one row per statistic)", line=1
        )
    values = rows[0][1:]
    table: dict[str, dict[str, float | None]] = {v: {} for v in values}
    for kind in ("expected", "unexpected"):
        name = f"mean_scorechange__{method}_{graph}_{kind}"
        line = next((k for k, r in enumerate(rows) if r and r[0] == name), None)
        if line is None:
            raise ConfigError.single(str(path), f"no row '{name}'", hint="give the paper's table2_*.csv")
        for value, cell in zip(values, rows[line][1:], strict=False):
            number = float(cell) if cell.strip() else None
            if number is not None and not (math.isfinite(number) and 0.0 <= number <= 1.0):
                raise ConfigError.single(
                    str(path), f"{value}: {cell!r} is not a rate in [0, 1]", line=line + 1, field=name
                )
            table[value][kind] = number
    return table


def compare_with_paper(ours: Mapping[str, Any], paper: Mapping[str, Mapping[str, float | None]]) -> dict[str, Any]:
    """Our table against the paper's, per value and for the means (over the values each side has)."""
    rows = {}
    by_slug = {slug(v): v for v in paper}
    for value, mine in ours["per_value"].items():
        theirs = paper.get(by_slug.get(value, value), {})
        rows[value] = {k: {"paper": theirs.get(k), "ours": mine[k]} for k in ("expected", "unexpected")}
    means = {
        k: {"paper": _mean([r.get(k) for r in paper.values()]), "ours": ours[f"mean_{k}"]}
        for k in ("expected", "unexpected")
    }
    for pair in means.values():
        pair["difference"] = (
            None if pair["paper"] is None or pair["ours"] is None else round(pair["ours"] - pair["paper"], 4)
        )
    cells = [(r[k]["paper"], r[k]["ours"]) for r in rows.values() for k in ("expected", "unexpected")]
    both_empty = sum(1 for p, o in cells if p is None and o is None)
    return {
        "per_value": rows,
        "means": means,
        "empty_cells_agree": both_empty + sum(1 for p, o in cells if p is not None and o is not None),
        "cells": len(cells),
        "mean_abs_difference": _mean([abs(o - p) for p, o in cells if p is not None and o is not None]),
    }


def rows_steered_by(matrix: ScoreMatrix, labels: Sequence[str], *, what: str = "--steering-only") -> ScoreMatrix:
    """The unsteered rows and the rows steered by one of ``labels`` (the paper's row filter: only its
    'good' SAE features enter discovery)."""
    steer_col, _ = id_layout(matrix, what)
    wanted = {intervention_label(x) for x in labels}
    present = {intervention_label(info.get(steer_col, "")) for info in matrix.row_info}
    unknown = sorted(wanted - present)
    if not wanted or unknown:
        raise ConfigError.single(
            what,
            f"no rows are steered by {', '.join(unknown) or '(nothing given)'}",
            hint="give comma-separated ids from the matrix's " + steer_col + " column",
        )
    labels = [intervention_label(info.get(steer_col, "")) for info in matrix.row_info]
    keep = np.array([is_unsteered(label) or label in wanted for label in labels])
    return matrix.rows(keep)
