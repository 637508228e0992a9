"""A plan in plain words: levers, expected target change, predicted side effects with uncertainty, why."""

from __future__ import annotations

import math

from causalguard.graphs.levers.catalog import Catalog
from causalguard.planning.planner import Plan


def explain_plan(plan: Plan, catalog: Catalog) -> str:
    lines = [f"Profile '{plan.profile}'"]
    if not plan.levers:
        lines.append("  no levers: the model answers unguarded")
    for lever in plan.levers:
        what = (f'role prompt "{lever.text}"' if lever.kind == "role"
                else f"SAE feature {lever.feature} added at strength {lever.strength:+g} (x residual norm)")
        lines.append(f"  lever {lever.id}: {what}")
    lines.append("  targets:")
    for value, goal in plan.goals.items():
        f = plan.forecast_for(value)
        wanted = ("as high as allowed" if goal > 0 else "as low as allowed") if math.isinf(goal) else f"{goal:+.3f}"
        lines.append(f"    {value}: wanted {wanted}; expected {f.change:+.3f} (95% CI {f.low:+.3f} .. {f.high:+.3f})")
    lines.append("  predicted side effects, 95% CI (measured lever effects; graph forecast in brackets):")
    for f in plan.forecast:
        if f.role == "target":
            continue
        tol = f"  tolerance {f.tolerance}" if f.tolerance is not None else ""
        flag = "  EXCEEDS TOLERANCE" if f.tolerance is not None and abs(f.change) > f.tolerance else ""
        lines.append(f"    {f.value}: {f.change:+.3f} ({f.low:+.3f} .. {f.high:+.3f}) [graph {f.graph_change:+.3f}]"
                     f"{tol}{flag}")
    lines.append("  why:")
    lines += [f"    {reason}" for reason in plan.reasons]
    noise = sum(catalog.noise_threshold.values()) / len(catalog.noise_threshold)
    lines.append(f"  scores in {catalog.model.name}'s survey units; "
                 f"noise threshold per value ~{noise:.3f}")
    return "\n".join(lines)
