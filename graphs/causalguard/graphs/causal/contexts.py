"""Joint causal inference: observational rows plus interventional rows, with context columns.

The paper discovers the value graph on personas under steering, with the steering condition as an
extra variable that PC may only use as a cause. We do the same with one binary *context column* per
intended intervention target and direction (``do:benevolence:+``): every lever that pushes
benevolence up sets it to 1. One column per lever (80 on SmolLM2) made PC take over 15 minutes per
run, because every value is adjacent to dozens of them; grouping by target and direction keeps the
information PC needs (which value was pushed, which way) at 21 columns. Levers without a target
share ``do:other``. Context columns enter PC as sources only (``Knowledge.sources_only``).

The interventional matrix is in the paper's format (``steer_dim``: the steered value, no direction;
``player_name``: the persona) or ours (``steering``: a catalog lever id or ``none``; ``condition``:
the persona). The survey (observational) rows get 0 in every context column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from causalguard.bundle.catalog import Catalog, LeverEntry
from causalguard.errors import ConfigError
from causalguard.graphs.causal.matrix import ScoreMatrix
from causalguard.values.loading import slug

UNSTEERED = ("", "none")
OTHER_CONTEXT = "do:other"


def is_unsteered(label: str) -> bool:
    return label.strip().lower() in UNSTEERED


def id_layout(matrix: ScoreMatrix, what: str = "--test") -> tuple[str, str]:
    """The (intervention, persona) id columns: the paper's or ours."""
    info = matrix.row_info[0] if matrix.row_info else {}
    if "steer_dim" in info and "player_name" in info:
        return "steer_dim", "player_name"
    if "steering" in info and "condition" in info:
        return "steering", "condition"
    raise ConfigError.single(
        what,
        "the matrix has neither the paper's id columns (steer_dim, player_name) nor ours (condition, steering)",
        hint="give an interventional score matrix",
    )


def aligned(matrix: ScoreMatrix, nodes: Sequence[str], what: str = "--test") -> ScoreMatrix:
    """``matrix`` with exactly the value columns ``nodes``, in that order."""
    missing = [v for v in nodes if v not in matrix.columns]
    if missing:
        raise ConfigError.single(
            what,
            f"the matrix lacks the value(s) {', '.join(missing)}",
            hint=f"its value columns are: {', '.join(matrix.columns)}",
        )
    return ScoreMatrix(
        list(nodes),
        matrix.values[:, [matrix.columns.index(v) for v in nodes]],
        matrix.row_ids,
        matrix.row_info,
        matrix.dropped,
    )


def unsteered_rows(matrix: ScoreMatrix, what: str = "--test") -> ScoreMatrix:
    """The rows of ``matrix`` that no intervention steered; a ConfigError naming ``what`` when there are
    fewer than three (too few for any observational statistic)."""
    steer_col, _ = id_layout(matrix, what)
    keep = np.array([is_unsteered(info.get(steer_col, "")) for info in matrix.row_info])
    if keep.sum() < 3:
        raise ConfigError.single(
            what,
            f"{int(keep.sum())} unsteered row(s); needs 3 or more",
            hint="the matrix needs rows with steering 'none' (or an empty steer_dim)",
        )
    return matrix.rows(keep)


def lever_target(intervention: str, columns: Sequence[str], catalog: Catalog | None) -> tuple[str, int] | None:
    """The value an intervention steers and its direction (+1/-1; 0 when the matrix does not say): a value
    it names (the paper's ``steer_dim``), or its lever's target in the catalog."""
    name = slug(intervention)
    if name in columns:
        return name, 0
    lever = catalog_lever(intervention, catalog)
    if lever is not None and lever.target:
        return lever.target, lever.direction
    return None


def catalog_lever(intervention: str, catalog: Catalog | None) -> LeverEntry | None:
    """The catalog lever an intervention label names (``levers interventions`` writes SAE levers as
    ``sae:<lever id>``), or None."""
    if catalog is None:
        return None
    lever_id = intervention.removeprefix("sae:") if intervention.startswith("sae:sae:") else intervention
    return next((lever for lever in catalog.levers if lever.id == lever_id), None)


def context_name(intervention: str, columns: Sequence[str], catalog: Catalog | None) -> str:
    target = lever_target(intervention, columns, catalog)
    if target is None:
        return OTHER_CONTEXT
    value, direction = target
    return f"do:{value}" + {1: ":+", -1: ":-", 0: ""}[int(np.sign(direction))]


@dataclass(frozen=True)
class JointMatrix:
    """Value scores of survey and interventional rows, each row's intervention and the context columns."""

    nodes: tuple[str, ...]
    values: np.ndarray  # rows x values
    interventions: tuple[str, ...]  # per row; "" for survey and unsteered rows
    contexts: tuple[str, ...]  # context column names
    indicators: np.ndarray  # rows x contexts, 0/1

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])

    def data(self, rows: np.ndarray | None = None) -> tuple[np.ndarray, list[str], tuple[str, ...]]:
        """Values plus the context columns that are set in ``rows`` (default: all): the data for PC, its
        column names and the source-only ones."""
        rows = np.arange(self.rows) if rows is None else rows
        used = [k for k in range(len(self.contexts)) if self.indicators[rows, k].any()]
        data = np.hstack([self.values[rows], self.indicators[np.ix_(rows, np.asarray(used, dtype=int))]])
        contexts = tuple(self.contexts[k] for k in used)
        return data, [*self.nodes, *contexts], contexts

    def without(self, intervention: str) -> np.ndarray:
        """Row indices without ``intervention``'s rows."""
        return np.array([r for r, label in enumerate(self.interventions) if label != intervention], dtype=int)

    def unsteered(self, rows: np.ndarray | None = None) -> np.ndarray:
        rows = np.arange(self.rows) if rows is None else rows
        return np.array([r for r in rows if not self.interventions[r]], dtype=int)


def joint_matrix(
    survey: ScoreMatrix | None, interventional: ScoreMatrix, nodes: Sequence[str], catalog: Catalog | None
) -> JointMatrix:
    """Survey rows (observational, may be None) then interventional rows, with context columns."""
    test = aligned(interventional, nodes, "--interventions")
    steer_col, _ = id_layout(test, "--interventions")
    labels = [info.get(steer_col, "").strip() for info in test.row_info]
    labels = ["" if is_unsteered(label) else label for label in labels]
    parts = [test.values]
    if survey is not None:
        parts.insert(0, aligned(survey, nodes, "survey").values)
        labels = [""] * survey.shape[0] + labels
    contexts = {label: context_name(label, nodes, catalog) for label in set(labels) if label}
    names = tuple(sorted(set(contexts.values())))
    indicators = np.zeros((len(labels), len(names)))
    for row, label in enumerate(labels):
        if label:
            indicators[row, names.index(contexts[label])] = 1.0
    return JointMatrix(tuple(nodes), np.vstack(parts), tuple(labels), names, indicators)
