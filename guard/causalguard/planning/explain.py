"""A plan in plain words: levers, expected target change, predicted side effects with uncertainty, why."""

from __future__ import annotations

import math

from causalguard.bundle.catalog import Catalog, LeverEntry
from causalguard.planning.planner import Plan

UNIT_TEXT = {
    "replies": "reply scale: what the chatbot says as the reply judge scores it; +1 = a typical reply that holds "
    "the value, -1 = one that rejects it",
    "survey": "survey scale: first-person statement likelihood, nats/token",
}


def _wording_text(lever: LeverEntry) -> str:
    """A role, guided or pair lever's wording, and its guidance when it has one."""
    if lever.guidance_scale is None:
        return f'role prompt "{lever.text}"'
    against = f'against "{lever.negative_text}"' if lever.negative_text else "against no role"
    return f'role prompt "{lever.text}" amplified by guidance g={lever.guidance_scale:g}, {against}'


def _vector_text(lever: LeverEntry) -> str:
    """A vector or pair lever's vector: value, tokens, layer and strength."""
    return (
        f"steering vector for {lever.target} added on "
        f"{'every token' if lever.vector_tokens == 'all' else 'generated tokens'} at layer {lever.layer}, strength "
        f"{lever.strength:+g} (x median residual norm)"
    )


def lever_text(lever: LeverEntry) -> str:
    """What a lever does, in words."""
    if lever.kind in ("role", "guided"):
        return _wording_text(lever)
    if lever.kind == "vector":
        return _vector_text(lever)
    if lever.kind == "pair":
        return f"{_wording_text(lever)}, together with the {_vector_text(lever)}, measured as one lever"
    if lever.kind == "adapter":
        return (
            f"value adapter {lever.adapter} (LoRA trained on the model's own judged replies for {lever.target}), "
            f"scale {lever.strength:g}"
        )
    return f"SAE feature {lever.feature} added at strength {lever.strength:+g} (x residual norm)"


def explain_plan(plan: Plan, catalog: Catalog) -> str:
    lines = [f"Profile '{plan.profile}' ({UNIT_TEXT[plan.units]})"]
    if not plan.levers:
        lines.append("  no levers: the model answers unguarded")
    for lever in plan.levers:
        lines.append(f"  lever {lever.id}: {lever_text(lever)}")
    survey = plan.units == "replies"
    lines.append("  targets:")
    for value, goal in plan.goals.items():
        f = plan.forecast_for(value)
        wanted = ("as high as allowed" if goal > 0 else "as low as allowed") if math.isinf(goal) else f"{goal:+.3f}"
        beside = f"; survey {f.survey_change:+.3f}" if survey and f.survey_change is not None else ""
        lines.append(
            f"    {value}: wanted {wanted}; expected {f.change:+.3f} (95% CI {f.low:+.3f} .. {f.high:+.3f}){beside}"
        )
    for warning in plan.warnings:
        lines.append(f"  WARNING unreachable: {warning}")
    graph_used = any(f.graph_change is not None for f in plan.forecast)
    lines.append(
        "  predicted side effects, 95% CI (measured lever effects"
        + ("; survey effect" if survey else "")
        + (" and graph forecast" if graph_used else "")
        + (" in brackets):" if survey or graph_used else "):")
    )
    for f in plan.forecast:
        if f.role == "target":
            continue
        tol = f"  tolerance {f.tolerance}" if f.tolerance is not None else ""
        flag = "  EXCEEDS TOLERANCE" if f.tolerance is not None and abs(f.change) > f.tolerance else ""
        notes = [f"survey {f.survey_change:+.3f}"] if survey and f.survey_change is not None else []
        notes += [f"graph {f.graph_change:+.3f}"] if f.graph_change is not None else []
        brackets = f" [{', '.join(notes)}]" if notes else ""
        lines.append(f"    {f.value}: {f.change:+.3f} ({f.low:+.3f} .. {f.high:+.3f}){brackets}{tol}{flag}")
    if plan.graph_label:
        lines.append(f"  {plan.graph_label}" + (f" (its forecasts are in {plan.units} units)" if graph_used else ""))
    lines.append("  why:")
    lines += [f"    {reason}" for reason in plan.reasons]
    noise = sum(catalog.noise_threshold.values()) / len(catalog.noise_threshold)
    lines.append(f"  survey noise threshold per value ~{noise:.3f} nats/token ({catalog.model.name})")
    return "\n".join(lines)
