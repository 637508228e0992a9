"""Plan levers for a profile's targets.

Candidates are the catalog's measured levers allowed by the profile's method, the runtime (SAE
levers need a local HF model), the fluency caps and reply quality: when the bundle has a behaviour
report (``behaviour.json``), a lever whose replies were degraded more often than unsteered ones, or
that was never measured on replies, is never planned (a hard constraint, not a penalty). Every
combination of up to ``max_levers`` compatible levers is scored with the catalog's measured
effects, assumed additive:

- a target with a desired change is scored by its squared miss, one with only a direction by how
  far it moves that way (each in units of the value's noise threshold); the mean |change| of all
  other values, in the same units and weighted by ``side_effect_weight``, is a penalty;
- a plan is feasible when every target moves the intended way by more than its noise threshold
  and every protected value's predicted |change| stays within its tolerance.

The graph adds a second forecast: the targets' planned changes pushed through the bundle's total
effects (``EffectModel.predict_lever``), which names the paths behind a side effect. An infeasible
profile raises ``PlanInfeasibleError`` naming the conflicting values and those paths.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from causalguard.behaviour.artifacts import BehaviourSummary
from causalguard.config.schema import LimitsSpec, ProfileSpec
from causalguard.errors import CausalguardError
from causalguard.graphs.bundle.format import Bundle
from causalguard.graphs.levers.catalog import Catalog, LeverEntry


class PlanInfeasibleError(CausalguardError):
    """No lever combination meets the targets within the protected values' tolerances."""

    def __init__(self, message: str, conflicts: Sequence[str]) -> None:
        super().__init__(message)
        self.conflicts = list(conflicts)


@dataclass(frozen=True)
class ValueForecast:
    value: str
    change: float  # measured effects of the chosen levers, summed
    low: float
    high: float
    graph_change: float  # the targets' planned changes propagated through the causal graph
    role: str  # "target", "protected" or "other"
    tolerance: float | None = None


@dataclass(frozen=True)
class Plan:
    profile: str
    levers: tuple[LeverEntry, ...]
    goals: dict[str, float]  # signed desired change; +/-inf = as far as possible
    forecast: tuple[ValueForecast, ...]
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def uses_sae(self) -> bool:
        return any(lever.kind == "sae" for lever in self.levers)

    def forecast_for(self, value: str) -> ValueForecast:
        return next(f for f in self.forecast if f.value == value)

    def role_instructions(self) -> list[str]:
        return [lever.text for lever in self.levers if lever.kind == "role" and lever.text]


def _goals(profile: ProfileSpec, catalog: Catalog) -> dict[str, float]:
    goals = {}
    for name, target in profile.targets.items():
        if target.change is not None:
            goals[name] = target.change
        elif target.score is not None:
            goals[name] = target.score - catalog.baseline[name].mean
        else:
            goals[name] = math.inf if target.direction == "increase" else -math.inf
    return goals


def degrading_levers(catalog: Catalog, behaviour: BehaviourSummary | None) -> dict[str, str]:
    """Levers the planner must never use because of what they do to replies: lever id -> why.

    With a behaviour report in the bundle, a lever is excluded when its replies were degraded more
    often than unsteered ones, or when it was not measured on replies at all (unknown is not safe)."""
    if behaviour is None:
        return {}
    out = {}
    for lever in catalog.levers:
        measured = behaviour.levers.get(lever.id)
        if measured is None:
            out[lever.id] = "not measured on replies"
        elif measured.degrades_replies:
            out[lever.id] = f"degrades replies ({measured.degraded_rate:.0%} of replies outside the unsteered range)"
    return out


def eligible_levers(catalog: Catalog, method: str, limits: LimitsSpec, sae_available: bool,
                    behaviour: BehaviourSummary | None = None) -> list[LeverEntry]:
    excluded = degrading_levers(catalog, behaviour)
    out = []
    for lever in catalog.levers:
        if lever.id in excluded:
            continue
        if method != "auto" and lever.kind != method:
            continue
        if lever.kind == "sae" and not sae_available:
            continue
        if lever.fluency.unparseable_rate - catalog.baseline_fluency.unparseable_rate > limits.max_unparseable_increase:
            continue
        ratio = lever.fluency.perplexity_ratio
        if ratio is not None and ratio > limits.max_perplexity_ratio:
            continue
        out.append(lever)
    return out


def _compatible(levers: Sequence[LeverEntry]) -> bool:
    keys = [(lever.kind, lever.feature if lever.kind == "sae" else lever.target) for lever in levers]
    return len(set(keys)) == len(keys)


def graph_paths(bundle: Bundle, source: str, target: str, limit: int = 3) -> list[str]:
    graph = bundle.graph.directed_view()
    if source not in graph or target not in graph:
        return []
    paths = nx.all_simple_paths(graph, source, target, cutoff=4)
    return [" -> ".join(p) for p in itertools.islice(paths, limit)]


def plan_levers(
    profile: ProfileSpec, bundle: Bundle, limits: LimitsSpec, *, name: str = "default", sae_available: bool = True,
) -> Plan:
    """Plan ``profile`` with the levers of ``bundle``'s catalog (see the module docstring)."""
    if bundle.catalog is None:
        raise ValueError(f"bundle {bundle.path} has no steering catalog to plan with")
    catalog = bundle.catalog
    dims = catalog.dimensions
    index = {d: k for k, d in enumerate(dims)}
    goals = _goals(profile, catalog)
    tolerances = {v: p.tolerance for v, p in profile.protected.items()}
    if not goals:
        return Plan(name, (), {}, _forecast((), dims, goals, tolerances, bundle, catalog),
                    ("no targets: the model runs unguarded",))
    levers = eligible_levers(catalog, profile.method, limits, sae_available, bundle.behaviour)
    excluded = degrading_levers(catalog, bundle.behaviour)
    if not levers:
        raise PlanInfeasibleError(
            f"profile '{name}': no lever passes method={profile.method}, the fluency caps "
            f"(perplexity x{limits.max_perplexity_ratio}, unparseable +{limits.max_unparseable_increase:.0%})"
            + ("" if sae_available else ", this runtime (no SAE levers on a remote model)")
            + (f" and reply quality ({len(excluded)} levers degrade replies or were never measured on them)"
               if excluded else ""), [])
    means = np.array([[lever.effects[d].mean for d in dims] for lever in levers])
    noise = np.array([max(catalog.noise_threshold[d], 1e-6) for d in dims])
    others = np.array([k for k, d in enumerate(dims) if d not in goals], dtype=int)
    best: tuple[float, tuple[int, ...]] | None = None
    best_any: tuple[float, tuple[int, ...], list[str]] | None = None
    for size in range(1, limits.max_levers + 1):
        for combo in itertools.combinations(range(len(levers)), size):
            if not _compatible([levers[i] for i in combo]):
                continue
            total = means[list(combo)].sum(0)
            score, violations = 0.0, []
            for value, goal in goals.items():
                achieved = total[index[value]]
                if math.isinf(goal):
                    score -= math.copysign(1, goal) * achieved / noise[index[value]]
                else:
                    score += ((achieved - goal) / noise[index[value]]) ** 2
                if achieved * (1 if goal > 0 else -1) <= noise[index[value]]:
                    violations.append(value)  # a target must move beyond noise, the intended way
            for value, tolerance in tolerances.items():
                if abs(total[index[value]]) > tolerance:
                    violations.append(value)
            if others.size:
                score += limits.side_effect_weight * float(np.abs(total[others] / noise[others]).mean())
            score += 0.01 * size  # prefer fewer levers when otherwise equal
            if not violations and (best is None or score < best[0]):
                best = (score, combo)
            penalty = score + 100.0 * len(violations)
            if best_any is None or penalty < best_any[0]:
                best_any = (penalty, combo, violations)
    if best is None:
        assert best_any is not None
        error = _infeasible(name, goals, tolerances, [levers[i] for i in best_any[1]], best_any[2], bundle, dims)
        blocked = [f"{lever_id} ({why})" for lever_id, why in sorted(excluded.items())
                   if catalog.lever(lever_id).target in goals]
        if blocked:
            raise PlanInfeasibleError(f"{error}\nnot considered because of reply quality (see BEHAVIOUR.md in the "
                                      f"bundle): {'; '.join(blocked)}", error.conflicts)
        raise error
    chosen = tuple(levers[i] for i in best[1])
    forecast = _forecast(chosen, dims, goals, tolerances, bundle, catalog)
    reasons = [
        f"{lever.id}: measured on {lever.effects[dims[0]].n} personas; moves "
        + ", ".join(f"{v} {lever.effects[v].mean:+.3f}" for v in goals)
        + (f" (proposed for {lever.target})" if lever.target and lever.target not in goals else "")
        for lever in chosen
    ]
    if bundle.behaviour is not None:
        for lever in chosen:
            b = bundle.behaviour.levers[lever.id]
            moved = ", ".join(f"{v} {b.effects[v][0]:+.2f} ({b.effects[v][1]:+.2f} .. {b.effects[v][2]:+.2f})"
                              + (" [weak judge]" if v in bundle.behaviour.weak_values else "")
                              for v in goals if v in b.effects)
            reasons.append(f"{lever.id} in replies (judge units): {moved}; {b.degraded_rate:.0%} of replies "
                           f"outside the unsteered quality range (unsteered "
                           f"{bundle.behaviour.calibration.degraded_rate:.0%})")
    reasons.append(f"best of {len(levers)} eligible levers under method={profile.method}, at most "
                   f"{limits.max_levers} combined, side effects on other values weighted {limits.side_effect_weight}")
    degrading = sorted(k for k, why in excluded.items() if "degrades" in why)
    unmeasured = len(excluded) - len(degrading)
    if degrading:
        reasons.append(f"never planned, their replies degrade: {', '.join(degrading)}")
    if unmeasured:
        reasons.append(f"never planned, not measured on replies: {unmeasured} levers")
    return Plan(name, chosen, goals, forecast, tuple(reasons))


def _forecast(levers: Sequence[LeverEntry], dims: Sequence[str], goals: dict[str, float],
              tolerances: dict[str, float], bundle: Bundle, catalog: Catalog) -> tuple[ValueForecast, ...]:
    planned = {v: sum(lever.effects[v].mean for lever in levers) for v in goals}
    graph = {p.value: p.change for p in bundle.effects.predict_lever(
        {v: c for v, c in planned.items() if v in bundle.effects.nodes})} if planned else {}
    out = []
    for value in dims:
        mean = sum(lever.effects[value].mean for lever in levers)
        half = math.sqrt(sum(((lever.effects[value].ci_high - lever.effects[value].ci_low) / 2) ** 2
                             for lever in levers))
        role = "target" if value in goals else ("protected" if value in tolerances else "other")
        out.append(ValueForecast(value, mean, mean - half, mean + half, graph.get(value, 0.0), role,
                                 tolerances.get(value)))
    return tuple(out)


def _infeasible(name: str, goals: dict[str, float], tolerances: dict[str, float], closest: list[LeverEntry],
                violations: list[str], bundle: Bundle, dims: Sequence[str]) -> PlanInfeasibleError:
    lines = [f"profile '{name}' is infeasible: no combination of measured levers moves "
             f"{', '.join(goals)} as asked while keeping the protected values within tolerance."]
    lines.append(f"closest plan: {', '.join(lever.id for lever in closest)}")
    for value in violations:
        moved = sum(lever.effects[value].mean for lever in closest)
        if value in goals:
            lines.append(f"  {value}: target not reached (closest plan moves it {moved:+.3f})")
            continue
        paths = [p for t in goals for p in graph_paths(bundle, t, value)]
        via = "; ".join(paths) if paths else "no graph path from a target: the levers act on it directly"
        lines.append(f"  {value}: predicted change {moved:+.3f} exceeds tolerance {tolerances[value]} (graph: {via})")
    lines.append("fix: loosen the tolerances, drop a target, allow more levers (limits.max_levers) "
                 "or another method")
    return PlanInfeasibleError("\n".join(lines), violations)
