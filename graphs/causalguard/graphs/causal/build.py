"""From a score matrix to a bundle: discovery, bootstrap stability, effects, evaluation, comparison."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from causalguard.artifacts import EFFECTS_FILE
from causalguard.graphs.bundle.format import BUNDLE_SCHEMA, Bundle
from causalguard.graphs.causal.bootstrap import annotate_stability, bootstrap_graphs, resample_indices
from causalguard.graphs.causal.discovery import PCSettings, run_pc
from causalguard.graphs.causal.evaluate import evaluate_held_out
from causalguard.graphs.causal.matrix import ScoreMatrix
from causalguard.graphs.causal.predict import EffectModel
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


def build_bundle(matrix: ScoreMatrix, settings: BuildSettings, *, source: Path | None = None) -> Bundle:
    """Discover the graph on all rows, annotate bootstrap stability, estimate effects, evaluate."""
    nodes = matrix.columns
    data = matrix.values
    graph = run_pc(data, nodes, settings.pc)
    indices = resample_indices(len(data), settings.bootstrap, settings.seed)
    samples = bootstrap_graphs(data, nodes, settings.pc, indices, workers=settings.workers)
    graph = annotate_stability(graph, samples)
    effects = class_total_effects(graph, data, limit=settings.dag_limit, seed=settings.seed)
    boot_totals = np.zeros((0, len(nodes), len(nodes)))
    if samples:  # each bootstrap graph's effects, fitted on its own resample: the prediction bands
        boot_totals = np.stack([class_total_effects(g, data[idx], limit=8, seed=settings.seed).mean
                                for g, idx in zip(samples, indices, strict=True)])
    survey = _survey_metadata(source)
    doc: dict[str, Any] = {
        "schema": BUNDLE_SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "producer": {"causalguard": _version(), "causal_learn_test": "fisherz", "algorithm": "PC"},
        "model": survey.get("model", {"name": "unknown", "fingerprint": ""}),
        "inventory": survey.get("inventory", {"dimensions": nodes}),
        "survey": {k: survey[k] for k in ("method", "settings", "conditions", "quality") if k in survey}
        | {"rows": len(data), "source": str(source) if source else None},
        "discovery": {
            "alpha": settings.pc.alpha, "max_depth": settings.pc.max_depth, "stable": settings.pc.stable,
            "knowledge": asdict(settings.pc.knowledge), "bootstrap": settings.bootstrap, "seed": settings.seed,
            "dropped": matrix.dropped, "columns": nodes,
        },
        "graph": graph.to_json(),
        "effects": {"nodes": list(nodes), "dags_in_class": effects.dags, "file": EFFECTS_FILE,
                    "meaning": "total[i][j] = change of j per unit do(i += 1), mean over the class's DAGs"},
        "evaluation": evaluate_held_out(matrix, settings.pc, seed=settings.seed, random_graphs=settings.random_graphs),
        "human_comparison": compare_with_reference(graph, matrix.correlation(), permutations=settings.permutations),
    }
    return Bundle(doc, graph, EffectModel(tuple(nodes), effects.mean, boot_totals), effects.low, effects.high)


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
