"""Hold a bundle's graph against an interventional test matrix: does it predict how steering one value
moves the others?

The test matrix is in the paper's format (``steer_dim`` = the intervention, empty when unsteered;
``player_name`` = the persona) or ours (``steering`` = the intervention, ``none`` when unsteered;
``condition`` = the persona, before any ``|``). For every intervention, the change is measured per persona (steered
minus the same persona unsteered) and averaged; a value *moved* when its mean change is beyond
noise (a two-sided 95% t-test over the personas). The intervention's target is the value it
names (``steer_dim``) or, for our lever ids, the lever's target in the bundle's catalog.

Every predictor sees only the measured change of the target itself (``m[X]``) and predicts the
others from it, as the planner does:

- ``graph``: the bundle's total effects, ``m[X] * T[X, v]``;
- ``no_graph``: no side effects (0);
- ``correlation``: the regression slope of v on X over unsteered rows (the test's own, or the training
  survey's for leave-one-lever-out);
- ``human_circumplex``: Schwartz's circular pattern scaled by the unsteered spread (Schwartz values only);
- ``random_graphs``: SEMs on random DAGs with the graph's edge count, fitted on the unsteered rows;
- ``catalog_effects`` (when the bundle's catalog has the levers): each lever's effects as the catalog
  measured them on its own, different personas: the planner's forecast of side effects (``units``:
  its survey effects, or for a reply matrix its effects on replies, ``behaviour report``);
- ``same_target_levers``: no value graph at all: the mean measured change of the *other* interventions
  that push the same target the same way (its context, ``contexts.context_name``); 0 when there is
  none. It asks whether side effects follow the kind of lever rather than a path between values. (Scaled
  by the ratio of on-target changes it did worse on SmolLM2: those changes are small and noisy.)

Metrics per predictor: AUROC of |prediction| for "moved", sign accuracy on moved values, MAE, each
with a 95% bootstrap interval over interventions; the paper's statistic (how often the target's
descendants vs non-descendants moved); and the split-half reproducibility (``split_half_reproducibility``):
each lever's own side effects measured on half of its personas, predicting the other half. A figure well
above every value-graph predictor says the side effects are reproducible and those predictors, not the
measurement, fall short; ``catalog_effects`` below it says the catalog's personas do not carry over.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from causalguard.bundle.format import Bundle
from causalguard.bundle.graph import ValueGraph
from causalguard.errors import ConfigError
from causalguard.graphs.causal.change_rates import intervention_label
from causalguard.graphs.causal.contexts import (
    UNSTEERED,
    aligned,
    catalog_lever,
    context_name,
    id_layout,
    lever_target,
)
from causalguard.graphs.causal.evaluate import PredictedPair, auroc, predictor_metrics, random_graph_effects
from causalguard.graphs.causal.matrix import ScoreMatrix
from causalguard.graphs.causal.reference import circumplex_pattern


@dataclass(frozen=True)
class Intervention:
    """One intervention's measured effect: mean change per value over the personas that have both rows."""

    id: str
    target: str
    personas: int
    mean: np.ndarray
    moved: np.ndarray  # bool per value
    changes: np.ndarray  # personas x values: steered minus the same persona unsteered


def measured_interventions(
    matrix: ScoreMatrix,
    bundle: Bundle,
    target_map: Mapping[str, str] | None = None,
) -> tuple[list[Intervention], list[str]]:
    """Per intervention, the mean per-persona change and which values moved (a two-sided 95% t-test over
    its personas); also what was skipped, and why. An intervention's target is the value it names, its
    catalog lever's target, or ``target_map``'s entry for it (SAE features name no value)."""
    steer_col, persona_col = id_layout(matrix)
    unsteered: dict[str, int] = {}
    steered: dict[str, dict[str, int]] = {}
    for i, info in enumerate(matrix.row_info):
        steer = info.get(steer_col, "").strip()
        persona = info.get(persona_col, "").split("|")[0].strip()  # ours: 'persona:000|sae:...
        if steer.lower() in UNSTEERED:
            unsteered.setdefault(persona, i)
        else:
            steered.setdefault(steer, {}).setdefault(persona, i)
    out, skipped = [], []
    for steer, rows in steered.items():
        found = lever_target(steer, matrix.columns, bundle.catalog)
        target = found[0] if found is not None else (target_map or {}).get(intervention_label(steer))
        if target is None or target not in matrix.columns:
            skipped.append(f"{steer}: no target value (not a value name, a catalog lever nor in the target map)")
            continue
        pairs = [(i, unsteered[p]) for p, i in rows.items() if p in unsteered]
        if len(pairs) < 2:
            skipped.append(f"{steer}: {len(pairs)} persona(s) with an unsteered row; needs 2")
            continue
        changes = np.array([matrix.values[i] - matrix.values[j] for i, j in pairs])
        mean, moved = mean_and_moved(changes)
        out.append(Intervention(steer, target, len(pairs), mean, moved, changes))
    return out, skipped


def mean_and_moved(changes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean change per value over personas (rows), and which values moved: a two-sided 95% t-test."""
    from scipy.stats import t as student_t

    mean = changes.mean(axis=0)
    se = changes.std(axis=0, ddof=1) / np.sqrt(len(changes))
    critical = float(student_t.ppf(0.975, len(changes) - 1))
    return mean, np.abs(mean) > critical * np.maximum(se, 1e-12)


Units = Literal["survey", "replies"]
GraphFor = Callable[[Intervention], tuple[ValueGraph, np.ndarray]]  # the graph and total effects to predict with


def evaluate_interventions(
    matrix: ScoreMatrix,
    bundle: Bundle,
    *,
    random_graphs: int = 20,
    bootstraps: int = 1000,
    seed: int = 0,
    graph_for: GraphFor | None = None,
    observational: np.ndarray | None = None,
    target_map: Mapping[str, str] | None = None,
    units: Units = "survey",
) -> dict[str, Any]:
    """The graph and its baselines on an interventional matrix (see the module docstring). ``graph_for``
    gives the graph to predict each intervention with (default: the bundle's, for every one; leave-one-
    lever-out passes graphs discovered without the intervention's rows); ``observational`` the unsteered
    rows the baselines are fitted on (default: the test matrix's own); ``target_map`` the target of
    interventions that name no value (``change_rates.largest_change_targets`` on a training matrix)."""
    nodes = list(bundle.effects.nodes)
    matrix = aligned(matrix, nodes)
    interventions, skipped = measured_interventions(matrix, bundle, target_map)
    if not interventions:
        raise ConfigError.single(
            "--test",
            "no intervention has a target and two personas with unsteered rows",
            hint="; ".join(skipped[:5]) + " (SAE features name no value: give their targets "
            "with --targets-from TRAINING_MATRIX)"
            if skipped
            else "add steered and unsteered rows per persona",
        )
    steer_col, _ = id_layout(matrix)
    base = np.array(
        [i for i, info in enumerate(matrix.row_info) if info.get(steer_col, "").strip().lower() in UNSTEERED]
    )
    observed = matrix.values[base] if observational is None else observational
    cov = np.cov(observed, rowvar=False)
    sd = observed.std(axis=0, ddof=1)
    pattern = circumplex_pattern(nodes)
    rng = np.random.default_rng(seed)
    pairs: list[PredictedPair] = []
    random_sets: dict[int, list[np.ndarray]] = {}
    owner: list[int] = []  # which intervention each pair belongs to (bootstrap unit)
    paper = {"descendant": [0, 0], "non_descendant": [0, 0]}
    siblings = _same_target_means(interventions, nodes, bundle)
    measured = _catalog_effects(interventions, bundle, units)
    for k, item in enumerate(interventions):
        x = nodes.index(item.target)
        delta = float(item.mean[x])
        graph, total = graph_for(item) if graph_for is not None else (bundle.graph, bundle.effects.total)
        edges = len(graph.edges)  # random DAGs depend only on the edge count: fit each count's set once
        if edges not in random_sets:
            random_sets[edges] = [random_graph_effects(graph, observed, nodes, rng) for _ in range(random_graphs)]
        randoms = random_sets[edges]
        descendants = graph.descendants(item.target)
        for j, v in enumerate(nodes):
            if j == x:
                continue
            predicted = {
                "graph": delta * float(total[x, j]),
                "no_graph": 0.0,
                "correlation": delta * float(cov[x, j] / cov[x, x]) if cov[x, x] > 0 else 0.0,
            }
            if pattern is not None:
                predicted["human_circumplex"] = delta * float(pattern[x, j] * sd[j] / sd[x]) if sd[x] > 0 else 0.0
            sibling = siblings.get(item.id)
            predicted["same_target_levers"] = float(sibling[j]) if sibling is not None else 0.0
            if measured is not None:
                predicted["catalog_effects"] = measured.get(item.id, {}).get(v, 0.0)
            for r, effects in enumerate(randoms):
                predicted[f"random_{r}"] = delta * float(effects[x, j])
            pairs.append(PredictedPair(item.target, v, float(item.mean[j]), bool(item.moved[j]), predicted))
            owner.append(k)
            bucket = paper["descendant" if v in descendants else "non_descendant"]
            bucket[0] += int(item.moved[j])
            bucket[1] += 1
    names = [n for n in pairs[0].predicted if not n.startswith("random_")]
    table = {name: _with_intervals(pairs, owner, len(interventions), name, bootstraps, seed) for name in names}
    if random_graphs:
        runs = [predictor_metrics(pairs, _column(f"random_{r}")) for r in range(random_graphs)]
        table[f"random_graphs (mean of {random_graphs})"] = {
            m: _mean([run[m] for run in runs]) for m in ("auroc", "sign_accuracy", "mae")
        }
    return {
        "interventions": len(interventions),
        "personas_per_intervention": int(np.median([i.personas for i in interventions])),
        "unsteered_rows": len(base),
        "pairs": len(pairs),
        "moved_share": round(sum(p.moved for p in pairs) / len(pairs), 4),
        "skipped": skipped,
        "predictors": table,
        "paper_statistic": {
            name: {"changed": c, "total": t, "rate": round(c / t, 4) if t else None} for name, (c, t) in paper.items()
        },
        "reproducibility": split_half_reproducibility(interventions, nodes, seed=seed),
    }


def split_half_reproducibility(
    interventions: list[Intervention], nodes: list[str], *, splits: int = 20, seed: int = 0
) -> dict[str, Any] | None:
    """How well a lever's side effects measured on half of its personas predict them on the other half:
    the AUROC of |mean change on half A| for "moved" on half B (a 95% t-test over B's personas), and
    the correlation of the two halves' mean changes, over random splits (interventions with 4+
    personas): how much of a lever's side effects is reproducible rather than noise, on one set of
    personas."""
    usable = [item for item in interventions if item.personas >= 4]
    if not usable:
        return None
    rng = np.random.default_rng(seed)
    aurocs: list[float] = []
    correlations: list[float] = []
    for _ in range(splits):
        scores: list[float] = []
        labels: list[bool] = []
        means_a: list[float] = []
        means_b: list[float] = []
        for item in usable:
            order = rng.permutation(item.personas)
            half_a, half_b = item.changes[order[: item.personas // 2]], item.changes[order[item.personas // 2 :]]
            mean_b, moved_b = mean_and_moved(half_b)
            others = [j for j, v in enumerate(nodes) if v != item.target]
            scores += [abs(float(half_a[:, j].mean())) for j in others]
            labels += [bool(moved_b[j]) for j in others]
            means_a += [float(half_a[:, j].mean()) for j in others]
            means_b += [float(mean_b[j]) for j in others]
        found = auroc(scores, labels)
        if found is not None:
            aurocs.append(found)
        if np.std(means_a) > 0 and np.std(means_b) > 0:
            correlations.append(float(np.corrcoef(means_a, means_b)[0, 1]))
    if not aurocs:
        return None
    return {
        "splits": splits,
        "interventions": len(usable),
        "auroc": round(float(np.mean(aurocs)), 4),
        "auroc_range": [round(float(min(aurocs)), 4), round(float(max(aurocs)), 4)],
        "side_effect_correlation": round(float(np.mean(correlations)), 4) if correlations else None,
        "meaning": "a lever's own side effects on half of its personas predicting 'moved' on the other half",
    }


def _catalog_effects(
    interventions: list[Intervention], bundle: Bundle, units: Units = "survey"
) -> dict[str, dict[str, float]] | None:
    """Per intervention, its lever's effects as the bundle's catalog measured them (other personas: the
    planner's own forecast of side effects), in ``units``; None when no intervention is a catalog lever
    with a measurement in those units."""
    found = {item.id: catalog_lever(item.id, bundle.catalog) for item in interventions}
    effects = {}
    for key, lever in found.items():
        measured = (
            None
            if lever is None
            else (lever.effects if units == "survey" else lever.replies.effects if lever.replies is not None else None)
        )
        if measured is not None:
            effects[key] = {v: e.mean for v, e in measured.items()}
    return effects or None


def _same_target_means(interventions: list[Intervention], nodes: list[str], bundle: Bundle) -> dict[str, np.ndarray]:
    """Per intervention, the mean change of the other interventions in its context (none: absent)."""
    context = {item.id: context_name(item.id, nodes, bundle.catalog) for item in interventions}
    out = {}
    for item in interventions:
        others = [o.mean for o in interventions if o.id != item.id and context[o.id] == context[item.id]]
        if others:
            out[item.id] = np.mean(others, axis=0)
    return out


def _column(name: str) -> Callable[[PredictedPair], float]:
    return lambda pair: pair.predicted[name]


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(float(np.mean(kept)), 4) if kept else None


def _with_intervals(
    pairs: list[PredictedPair], owner: list[int], n: int, name: str, bootstraps: int, seed: int
) -> dict[str, Any]:
    """A predictor's metrics with 95% percentile intervals, resampling whole interventions."""
    point = predictor_metrics(pairs, lambda p: p.predicted[name])
    rng = np.random.default_rng(seed)
    by_owner: list[list[PredictedPair]] = [[] for _ in range(n)]
    for pair, k in zip(pairs, owner, strict=True):
        by_owner[k].append(pair)
    draws: dict[str, list[float]] = {"auroc": [], "sign_accuracy": [], "mae": []}
    for _ in range(bootstraps):
        sample = [pair for k in rng.integers(0, n, size=n) for pair in by_owner[k]]
        for metric, value in predictor_metrics(sample, lambda p: p.predicted[name]).items():
            if value is not None:
                draws[metric].append(value)
    out: dict[str, Any] = dict(point)
    for metric, values in draws.items():
        bounds = np.quantile(values, [0.025, 0.975]) if len(values) >= 20 else None
        out[f"{metric}_ci"] = None if bounds is None else [round(float(b), 4) for b in bounds]
    return out


def render_interventions(doc: dict[str, Any]) -> str:
    """The evaluation as a table, with what the figures mean."""
    lines = [
        f"{doc['interventions']} interventions (median {doc['personas_per_intervention']} personas each, "
        f"{doc['unsteered_rows']} unsteered rows), {doc['pairs']} (intervention, other value) pairs, "
        f"{doc['moved_share']:.0%} moved beyond noise (95% t-test over personas)",
        "",
        "| predictor | AUROC (95% CI) | sign accuracy on moved (95% CI) | MAE |",
        "|---|---|---|---|",
    ]

    def fmt(row: dict[str, Any], metric: str) -> str:
        value, ci = row.get(metric), row.get(f"{metric}_ci")
        text = "n/a" if value is None else f"{value:.3f}"
        return text + (f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci else "")

    for name, row in doc["predictors"].items():
        lines.append(f"| {name} | {fmt(row, 'auroc')} | {fmt(row, 'sign_accuracy')} | {fmt(row, 'mae')} |")
    stat = doc["paper_statistic"]
    lines += [
        "",
        "paper's statistic (share of values that moved): descendants of the target "
        f"{stat['descendant']['rate']} ({stat['descendant']['changed']}/{stat['descendant']['total']}), "
        f"non-descendants {stat['non_descendant']['rate']} ({stat['non_descendant']['changed']}/"
        f"{stat['non_descendant']['total']})",
    ]
    split = doc.get("reproducibility")
    if split:
        lines += [
            f"split-half reproducibility (each lever's own side effects on half of its personas, predicting "
            f"the other half; {split['splits']} random splits): AUROC {split['auroc']:.3f} (range "
            f"{split['auroc_range'][0]:.2f}-{split['auroc_range'][1]:.2f}), correlation of the halves' "
            f"side effects r = {split['side_effect_correlation'] or float('nan'):.3f}"
        ]
    if doc["skipped"]:
        lines += [
            "",
            f"skipped {len(doc['skipped'])} intervention(s): "
            + "; ".join(doc["skipped"][:5])
            + (" ..." if len(doc["skipped"]) > 5 else ""),
        ]
    return "\n".join(lines)
