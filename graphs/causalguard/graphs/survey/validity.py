"""Known-group validity: roles with an unambiguous expected profile must move values that way."""

from __future__ import annotations

from typing import Any

import numpy as np

from causalguard.graphs.survey.results import SurveyResult


def value_role_checks(result: SurveyResult) -> dict[str, dict[str, Any]]:
    """Per dimension X with both value roles: inclined > baseline, disinclined < baseline, inclined > disinclined.

    Also the contrast row (inclined minus disinclined on every dimension) and the rank of X in it
    (1 = the role moved its own value more than any other).
    """
    matrix = result.matrix()
    rows = {c.id: i for i, c in enumerate(result.conditions)}
    base = rows.get("baseline")
    out: dict[str, dict[str, Any]] = {}
    for j, dim in enumerate(result.dimensions):
        inc = rows.get(f"value:{dim}:inclined")
        dis = rows.get(f"value:{dim}:disinclined")
        if inc is None or dis is None:
            continue
        contrast = matrix[inc] - matrix[dis]
        checks = [bool(contrast[j] > 0)]
        if base is not None:
            checks += [bool(matrix[inc, j] > matrix[base, j]), bool(matrix[dis, j] < matrix[base, j])]
        order = np.argsort(-contrast)
        out[dim] = {
            "met": sum(checks),
            "checks": len(checks),
            "contrast_on_target": round(float(contrast[j]), 4),
            "on_target_rank": int(np.where(order == j)[0][0]) + 1,
            "contrast_row": {d: round(float(v), 4) for d, v in zip(result.dimensions, contrast, strict=True)},
        }
    return out


def anchor_checks(result: SurveyResult) -> dict[str, Any]:
    """Each anchor's expected directions against the mean persona (or the baseline if no personas)."""
    matrix = result.matrix()
    kinds = np.array([c.role_kind for c in result.conditions])
    reference_rows = np.where(kinds == "persona")[0]
    if reference_rows.size == 0:
        reference_rows = np.array([i for i, c in enumerate(result.conditions) if c.id == "baseline"])
    if reference_rows.size == 0:
        return {"per_dimension": {}, "per_anchor": {}}
    reference = matrix[reference_rows].mean(axis=0)
    col = {d: j for j, d in enumerate(result.dimensions)}
    per_dim: dict[str, list[bool]] = {}
    per_anchor: dict[str, dict[str, bool]] = {}
    for i, cond in enumerate(result.conditions):
        if cond.role_kind != "anchor" or not cond.expected:
            continue
        per_anchor[cond.id] = {}
        for dim, direction in cond.expected.items():
            if dim not in col:
                continue
            met = bool(np.sign(matrix[i, col[dim]] - reference[col[dim]]) == direction)
            per_anchor[cond.id][dim] = met
            per_dim.setdefault(dim, []).append(met)
    return {
        "reference": "mean persona" if (kinds == "persona").any() else "baseline",
        "per_dimension": {d: {"met": sum(v), "checks": len(v)} for d, v in per_dim.items()},
        "per_anchor": per_anchor,
    }
