"""From a score matrix to a bundle: discovery, stability selection, effects, evaluation, comparison.

With an interventional matrix (``interventions``), the survey's rows and the interventional rows are
pooled with context columns that PC may only use as causes (``contexts.py``); the shipped graph and
effects are among the values, and the bundle's evaluation adds leave-one-lever-out prediction.
The edges that ship are those PC finds in at least ``stability`` of the bootstrap resamples.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from causalguard.artifacts import EFFECTS_FILE
from causalguard.bundle.catalog import Catalog
from causalguard.bundle.effects import EffectModel
from causalguard.bundle.format import BUNDLE_SCHEMA, Bundle
from causalguard.bundle.graph import ValueGraph
from causalguard.graphs.causal.bootstrap import bootstrap_graphs, resample_indices, stable_graph
from causalguard.graphs.causal.contexts import joint_matrix
from causalguard.graphs.causal.discovery import PCSettings, run_pc
from causalguard.graphs.causal.evaluate import evaluate_held_out
from causalguard.graphs.causal.leave_one_out import leave_one_lever_out
from causalguard.graphs.causal.matrix import ScoreMatrix
from causalguard.graphs.causal.reference import compare_with_reference
from causalguard.graphs.causal.sem import class_total_effects
from causalguard.run_records import read_run_record


@dataclass(frozen=True)
class BuildSettings:
    pc: PCSettings = field(default_factory=PCSettings)
    bootstrap: int = 100
    workers: int = 2
    seed: int = 0
    dag_limit: int = 64
    random_graphs: int = 20
    permutations: int = 9999
    stability: float = 0.5  # share of bootstrap graphs an edge must appear in to ship
    evaluate_levers: bool = True  # with interventions: leave-one-lever-out evaluation (one PC run per lever)
    # "replies": the interventional matrix is a reply matrix ('behaviour reply-matrix') that holds its own
    # unsteered rows, and ``matrix`` is those rows (they are not added twice); catalog forecasts in reply units
    units: Literal["survey", "replies"] = "survey"


def build_bundle(
    matrix: ScoreMatrix,
    settings: BuildSettings,
    *,
    source: Path | None = None,
    interventions: ScoreMatrix | None = None,
    catalog: Catalog | None = None,
    interventions_source: Path | None = None,
) -> Bundle:
    """Discover the graph (stability selection over bootstraps), estimate effects, evaluate."""
    nodes = matrix.columns
    n = len(nodes)
    pc = settings.pc
    joint = None
    if interventions is None:
        data, names = matrix.values, list(nodes)
    else:
        joint = joint_matrix(_observational(matrix, settings), interventions, nodes, catalog)
        data, names, contexts = joint.data()
        pc = replace(pc, knowledge=replace(pc.knowledge, sources_only=(*pc.knowledge.sources_only, *contexts)))
    indices = resample_indices(len(data), settings.bootstrap, settings.seed)
    samples = bootstrap_graphs(data, names, pc, indices, workers=settings.workers)
    full = stable_graph(names, samples, settings.stability) if samples else run_pc(data, names, pc)
    effects = class_total_effects(full, data, limit=settings.dag_limit, seed=settings.seed)
    boot_totals = np.zeros((0, n, n))
    if samples:  # each bootstrap graph's effects, fitted on its own resample: the prediction bands
        boot_totals = np.stack(
            [
                class_total_effects(g, data[idx], limit=8, seed=settings.seed).mean[:n, :n]
                for g, idx in zip(samples, indices, strict=True)
            ]
        )
    graph = ValueGraph(tuple(nodes), tuple(e for e in full.edges if e.source in nodes and e.target in nodes))
    survey = _survey_metadata(source) if settings.units == "survey" else {}
    if settings.units == "replies" and catalog is not None:  # the replies' model is the catalog's
        survey["model"] = catalog.model.model_dump()
    discovery: dict[str, Any] = {
        "alpha": pc.alpha,
        "max_depth": pc.max_depth,
        "stable": pc.stable,
        "knowledge": asdict(settings.pc.knowledge),
        "bootstrap": settings.bootstrap,
        "seed": settings.seed,
        "stability_threshold": settings.stability if samples else None,
        "edges_selected_by": f"adjacency in >= {settings.stability:.0%} of {len(samples)} bootstrap graphs"
        if samples
        else "one PC run on all rows (no bootstrap)",
        "dropped": matrix.dropped,
        "columns": nodes,
    }
    if joint is not None:
        discovery["interventions"] = {
            "source": str(interventions_source) if interventions_source else None,
            "rows": interventions.shape[0] if interventions is not None else 0,
            "contexts": list(joint.contexts),
            "context_edges": {c: sorted(e.target for e in full.edges if e.source == c) for c in joint.contexts},
            "meaning": "context columns (one per intended target and direction) entered PC as sources only",
        }
    doc: dict[str, Any] = {
        "schema": BUNDLE_SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "producer": {"causalguard": _version(), "causal_learn_test": "fisherz", "algorithm": "PC"},
        "model": survey.get("model", {"name": "unknown", "fingerprint": ""}),
        "inventory": survey.get("inventory", {"dimensions": nodes}),
        "survey": {k: survey[k] for k in ("method", "settings", "conditions", "quality") if k in survey}
        | {
            "rows": len(data),
            "survey_rows": matrix.shape[0],
            "source": str(source) if source else None,
            "units": settings.units,
            "columns_used": _COLUMNS_USED[settings.units],
        },
        "discovery": discovery,
        "graph": graph.to_json(),
        "effects": {
            "nodes": list(nodes),
            "dags_in_class": effects.dags,
            "file": EFFECTS_FILE,
            "meaning": "total[i][j] = change of j per unit do(i += 1), mean over the class's DAGs",
        },
        "evaluation": evaluate_held_out(matrix, settings.pc, seed=settings.seed, random_graphs=settings.random_graphs),
        "human_comparison": compare_with_reference(graph, matrix.correlation(), permutations=settings.permutations),
    }
    bundle = Bundle(
        doc,
        graph,
        EffectModel(tuple(nodes), effects.mean[:n, :n], boot_totals),
        effects.low[:n, :n],
        effects.high[:n, :n],
        catalog=catalog,
    )
    if interventions is not None and settings.evaluate_levers:
        doc["evaluation"]["leave_one_lever_out"] = leave_one_lever_out(
            _observational(matrix, settings),
            interventions,
            bundle,
            settings.pc,
            seed=settings.seed,
            random_graphs=settings.random_graphs,
            units=settings.units,
        )
    return bundle


_COLUMNS_USED = {
    "survey": "survey value scores (statement likelihoods); no reply-judge columns",
    "replies": "reply-judge scores: per persona and condition, the mean over its replies to dev prompts",
}


def _observational(matrix: ScoreMatrix, settings: BuildSettings) -> ScoreMatrix | None:
    """The survey rows to add to the interventional ones: none for a reply matrix, which holds them."""
    return None if settings.units == "replies" else matrix


def _survey_metadata(source: Path | None) -> dict[str, Any]:
    """Model, inventory, method and quality summary of the survey the matrix came from, if known."""
    if source is None or not source.is_dir() or not (source / "run.json").exists():
        return {}
    run = read_run_record(source / "run.json")
    out: dict[str, Any] = {k: run[k] for k in ("model", "inventory", "method", "settings", "conditions") if k in run}
    quality = source / "quality.json"
    if quality.exists():
        out["quality"] = json.loads(quality.read_text()).get("summary", {})
    return out


def _version() -> str:
    from importlib.metadata import version

    try:
        return version("causalguard")
    except Exception:
        return "unknown"
