"""Plan levers for a profile's targets.

Units: with a catalog measured on replies (catalog v2) the planner works in reply-scale units (what
the chatbot says, as the reply judge scores it); otherwise, or with ``units: survey``, in the
survey's. Survey effects are shown beside reply effects either way.

Candidates are the catalog's measured levers allowed by the profile's method, the runtime (SAE
levers need a local HF model), the fluency caps and reply quality. Reply quality is a hard
constraint, not a penalty: a lever whose replies were degraded more often than unsteered ones, a
weaker setting of a feature whose stronger setting stays fluent, a lever never measured on
replies (when the bundle has reply measurements) and a lever whose pre-registered held-out test
failed (``failed_held_out``, ``causalguard behaviour held-out``) are never planned. Every combination of up to
``max_levers`` compatible levers is scored with the measured effects, assumed additive:

- a target with a desired change is scored by its squared miss, one with only a direction by how
  far it moves that way (each in units of the value's noise); the mean |change| of all other values,
  in the same units and weighted by ``side_effect_weight``, is a penalty;
- a plan is feasible when every target moves the intended way beyond noise (survey: more than the
  value's noise threshold; replies: the 95% interval excludes 0) and every protected value's
  predicted |change| stays within its tolerance.

In reply units only *goal levers* are planned: a lever built for one of the profile's targets, in the
asked direction, whose own replies moved that target the intended way beyond noise (verdict
``usable``), and every target needs one of them. Among the goal levers for one target and direction,
only those with the strongest evidence compete (``planning.evidence``): passed a held-out test, over
confirmed on fresh dev replies, over screened only. A screening effect is the lucky draw that selected
the lever and runs high, so it never outbids a lever whose effect was measured again.

A lever's effect on values other than its own target is a side effect: it is forecast (and must keep
protected values within tolerance) but never relied on to reach a goal. Such effects are picked after
the fact from ~10 values x every lever, so the ones that look large are mostly the lucky draws (the
bundle's ``validation.json`` records how plans that relied on them fared on held-out prompts).

A goal the best plan cannot reach (``change: 0.5`` where it reaches +0.05) is a warning naming what
is reachable. The graph adds a forecast: the targets' survey changes pushed through the bundle's
total effects, labelled with the graph's held-out evaluation. An infeasible profile raises
``PlanInfeasibleError`` naming the conflicting values, the graph paths and the levers excluded for
reply quality.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import networkx as nx
import numpy as np

from causalguard.bundle.behaviour import BehaviourSummary
from causalguard.bundle.catalog import REPLY_ONLY_KINDS, WORDING_KINDS, Catalog, Interval, LeverEntry
from causalguard.bundle.format import Bundle
from causalguard.config.schema import LimitsSpec, ProfileSpec
from causalguard.errors import CausalguardError
from causalguard.planning.evidence import best_evidenced


class PlanInfeasibleError(CausalguardError):
    """No lever combination meets the targets within the protected values' tolerances."""

    def __init__(self, message: str, conflicts: Sequence[str]) -> None:
        super().__init__(message)
        self.conflicts = list(conflicts)


PlanUnits = Literal["replies", "survey"]


@dataclass(frozen=True)
class ValueForecast:
    value: str
    change: float  # measured effects of the chosen levers, summed (the plan's units)
    low: float
    high: float
    graph_change: float | None  # the targets' planned survey changes propagated through the causal graph;
    # None when the graph is not validated on held-out data (``graph_validated``)
    role: str  # "target", "protected" or "other"
    tolerance: float | None = None
    survey_change: float | None = None  # the survey's forecast, beside a reply-unit forecast


@dataclass(frozen=True)
class Plan:
    profile: str
    levers: tuple[LeverEntry, ...]
    goals: dict[str, float]  # signed desired change; +/-inf = as far as possible
    forecast: tuple[ValueForecast, ...]
    reasons: tuple[str, ...] = field(default_factory=tuple)
    units: PlanUnits = "survey"
    warnings: tuple[str, ...] = field(default_factory=tuple)
    graph_label: str = ""  # the graph's held-out evaluation, for reading its forecast

    @property
    def key(self) -> tuple[str, ...]:
        """What the plan applies: profile, lever ids and units. Audits and the live monitor start afresh
        when a reload changes it."""
        return (self.profile, *(lever.id for lever in self.levers), self.units)

    @property
    def uses_sae(self) -> bool:
        return any(lever.kind == "sae" for lever in self.levers)

    def forecast_for(self, value: str) -> ValueForecast:
        return next(f for f in self.forecast if f.value == value)

    def role_instructions(self) -> list[str]:
        """The system-message instructions of the plan's role, guided and pair levers."""
        return [lever.text for lever in self.levers if lever.kind in WORDING_KINDS and lever.text]

    @property
    def guided_lever(self) -> LeverEntry | None:
        """The plan's guided lever: a guided lever, or a pair lever whose wording is guided (a plan holds at
        most one)."""
        return next((lever for lever in self.levers if lever.guidance_scale is not None), None)

    def negative_instructions(self) -> list[str] | None:
        """The guidance twin's instructions: the role instructions with the guided lever's wording replaced
        by its negative wording (or left out); None when the plan has no guided lever."""
        guided = self.guided_lever
        if guided is None:
            return None
        out = []
        for lever in self.levers:
            if lever is guided:
                if guided.negative_text:
                    out.append(guided.negative_text)
            elif lever.kind in WORDING_KINDS and lever.text:
                out.append(lever.text)
        return out


def plan_units(requested: str, catalog: Catalog) -> PlanUnits:
    """``auto`` -> replies when the catalog was measured on replies; an impossible request is an error."""
    if requested == "survey":
        return "survey"
    if catalog.has_replies:
        return "replies"
    if requested == "replies":
        raise PlanInfeasibleError(
            "units: replies needs a bundle whose catalog was measured on replies; run "
            "'causalguard behaviour report --bundle FOLDER' or set units: survey",
            [],
        )
    return "survey"


def lever_effect(lever: LeverEntry, value: str, units: PlanUnits) -> Interval:
    """A lever's measured effect on ``value`` in the plan's units."""
    if units == "replies":
        if lever.replies is None:
            raise ValueError(f"lever {lever.id} was not measured on replies")
        return lever.replies.effects[value]
    if lever.effects is None:
        raise ValueError(f"lever {lever.id} was measured on replies only: it has no survey effects")
    return lever.effects[value]


def _goals(profile: ProfileSpec, catalog: Catalog, units: PlanUnits) -> dict[str, float]:
    goals = {}
    for name, target in profile.targets.items():
        if target.change is not None:
            goals[name] = target.change
        elif target.score is not None:
            base = (catalog.replies_baseline or {})[name] if units == "replies" else catalog.baseline[name].mean
            goals[name] = target.score - base
        else:
            goals[name] = math.inf if target.direction == "increase" else -math.inf
    return goals


def degrading_levers(catalog: Catalog, behaviour: BehaviourSummary | None) -> dict[str, str]:
    """Levers the planner must never use because of what they do to replies: lever id -> why.

    With reply measurements (catalog v2, or a v1 catalog beside a behaviour report), a lever is
    excluded when its replies were degraded more often than unsteered ones, when a stronger setting
    of the same SAE feature stays fluent, or when it was not measured on replies at all (unknown is
    not safe)."""
    out = {}
    if catalog.has_replies:
        for lever in catalog.levers:
            if lever.replies is None:
                out[lever.id] = "not measured on replies"
            elif not lever.replies.plannable:
                what = {
                    "degrades_replies": "degrades replies",
                    "failed_held_out": "did not hold on held-out prompts",
                }.get(lever.replies.verdict, "weaker setting")
                out[lever.id] = f"{what} ({lever.replies.why})"
        return out
    if behaviour is None:
        return {}
    for lever in catalog.levers:
        measured = behaviour.levers.get(lever.id)
        if measured is None:
            out[lever.id] = "not measured on replies"
        elif measured.degrades_replies:
            out[lever.id] = f"degrades replies ({measured.degraded_rate:.0%} of replies outside the unsteered range)"
    return out


def moves_own_goal(lever: LeverEntry, goals: dict[str, float]) -> bool:
    """Whether ``lever`` is a goal lever in reply units: built for one of ``goals`` in its direction, and
    its own replies moved that target the intended way beyond noise."""
    if lever.replies is None or lever.replies.verdict != "usable" or lever.target not in goals:
        return False
    return lever.direction == (1 if goals[lever.target] > 0 else -1)


def _no_goal_lever(
    name: str, goals: dict[str, float], catalog: Catalog, method: str, excluded: dict[str, str], allowed: set[str]
) -> PlanInfeasibleError:
    """Reply units, and no allowed lever moves any target in its own replies: say, per target, what each
    lever built for it did."""
    lines = [
        f"profile '{name}' is infeasible in replies units: no allowed lever built for "
        f"{', '.join(goals)} moved it the asked way beyond noise in its own replies (method={method})."
    ]
    for value, goal in goals.items():
        sign = 1 if goal > 0 else -1
        built = [lever for lever in catalog.levers if lever.target == value and lever.direction == sign]
        lines.append(
            f"  {value} ({'increase' if sign > 0 else 'decrease'}): "
            + (
                "; ".join(_lever_verdict(lever, value, excluded, allowed) for lever in built)
                if built
                else "the catalog has no lever for it"
            )
        )
    lines.append(
        "levers' effects on values other than their own target are side effects and are never relied on "
        "to reach a goal. fix: drop the target, measure more levers for it ('causalguard levers extend', "
        "'causalguard behaviour report'), or plan in survey units (units: survey) knowing that survey "
        "effects did not carry over to replies on this model"
    )
    return PlanInfeasibleError("\n".join(lines), list(goals))


def _lever_verdict(lever: LeverEntry, value: str, excluded: dict[str, str], allowed: set[str]) -> str:
    if lever.replies is None:
        return f"{lever.id} not measured on replies"
    effect = _interval_text(lever.replies.effects[value])
    if lever.replies.verdict == "failed_held_out":
        held_out = lever.replies.why.split("held-out test: ")[-1]
        return f"{lever.id} {effect} on dev prompts, {held_out} on held-out prompts"
    if lever.id in excluded:
        return f"{lever.id} {effect}, {excluded[lever.id].split(' (')[0]}"
    if lever.replies.verdict == "usable" and lever.id not in allowed:
        return f"{lever.id} {effect}, moves it but is not allowed here (method, runtime or fluency caps)"
    return f"{lever.id} {effect}, {lever.replies.verdict.replace('_', ' ')}"


# Lever kinds that act on the model's activations or logits: they need the local model (not proxy mode).
LOCAL_ONLY_KINDS = ("sae", "guided", "vector", "pair", "adapter")


def runnable_kinds(
    *, local_model: bool, sae_loaded: bool, vectors_loaded: bool, adapters_loaded: bool = False
) -> set[str]:
    """The ``LOCAL_ONLY_KINDS`` a runtime can apply: none on a remote model; SAE, vector, pair and adapter
    levers only with their artifacts loaded (pair levers: the steering vectors); guided levers on any local
    model."""
    if not local_model:
        return set()
    return (
        {"guided"}
        | ({"sae"} if sae_loaded else set())
        | ({"vector", "pair"} if vectors_loaded else set())
        | ({"adapter"} if adapters_loaded else set())
    )


def eligible_levers(
    catalog: Catalog,
    method: str,
    limits: LimitsSpec,
    sae_available: bool,
    behaviour: BehaviourSummary | None = None,
    units: PlanUnits = "replies",
    local_kinds: Collection[str] | None = None,
    engine_levers: Collection[str] = (),
) -> list[LeverEntry]:
    """Levers the profile's method, the runtime, the survey fluency caps and reply quality allow.

    ``local_kinds``: the kinds of ``LOCAL_ONLY_KINDS`` this runtime can apply (a local model with the
    SAE, the steering vectors); default: all of them when ``sae_available``, none otherwise.
    ``engine_levers``: ids of levers the proxy-mode upstream applies itself (``upstream.lora_adapters``),
    runnable whatever the local runtime can do. In survey
    units only levers with survey measurements qualify (guided and vector levers are measured on
    replies only)."""
    runnable = set(local_kinds) if local_kinds is not None else set(LOCAL_ONLY_KINDS) if sae_available else set()
    excluded = degrading_levers(catalog, behaviour)
    out = []
    for lever in catalog.levers:
        if lever.id in excluded:
            continue
        if method != "auto" and lever.kind != method:
            continue
        if lever.kind in LOCAL_ONLY_KINDS and lever.kind not in runnable and lever.id not in engine_levers:
            continue
        if units == "survey" and lever.effects is None:
            continue
        if lever.fluency is not None:
            extra = lever.fluency.unparseable_rate - catalog.baseline_fluency.unparseable_rate
            if extra > limits.max_unparseable_increase:
                continue
            ratio = lever.fluency.perplexity_ratio
            if ratio is not None and ratio > limits.max_perplexity_ratio:
                continue
        out.append(lever)
    return out


def _compatible(levers: Sequence[LeverEntry]) -> bool:
    """One lever per kind and target (per feature for SAE levers). Guided, vector, pair and adapter levers are
    planned alone: each was measured on its own, and a plan has one guidance twin. A combination of them is
    planned only as a pair lever, which was measured as one (``kind: pair``)."""
    keys = [(lever.kind, lever.feature if lever.kind == "sae" else lever.target) for lever in levers]
    reply_only = sum(lever.kind in REPLY_ONLY_KINDS for lever in levers)
    return len(set(keys)) == len(keys) and (reply_only == 0 or len(levers) == 1)


def graph_paths(bundle: Bundle, source: str, target: str, limit: int = 3) -> list[str]:
    graph = bundle.graph.directed_view()
    if source not in graph or target not in graph:
        return []
    paths = nx.all_simple_paths(graph, source, target, cutoff=4)
    return [" -> ".join(p) for p in itertools.islice(paths, limit)]


def graph_evaluation(bundle: Bundle, units: str = "survey") -> tuple[str, dict[str, Any]]:
    """The graph's held-out predictor table for plans in ``units``. Survey units: leave-one-lever-out on
    interventional data when the bundle has it (how the planner uses the graph), else the persona-split
    evaluation of value roles. Reply units: the reply graph's leave-one-lever-out (``reply_graph/``), or
    an empty table when the bundle has none."""
    if units == "replies":
        if bundle.reply_graph is None:
            return "no graph on replies", {}
        lolo = (bundle.reply_graph.doc.get("evaluation") or {}).get("leave_one_lever_out") or {}
        return f"reply graph, leave-one-lever-out, {lolo.get('interventions', 0)} levers", lolo.get("predictors") or {}
    evaluation = bundle.doc.get("evaluation") or {}
    lolo = evaluation.get("leave_one_lever_out") or {}
    if lolo.get("predictors"):
        return f"leave-one-lever-out, {lolo['interventions']} levers", lolo["predictors"]
    return "held-out personas, value roles", evaluation.get("predictors") or {}


def graph_validated(bundle: Bundle, units: str = "survey") -> bool:
    """Whether the graph forecasts side effects in ``units``: its held-out AUROC beats every baseline's
    and the lower end of its 95% interval is above chance (0.5). Without an interval it is not validated."""
    return _graph_verdict(bundle, units)[0]


def _graph_verdict(bundle: Bundle, units: str = "survey") -> tuple[bool, str]:
    """(validated, the verdict in words), for ``graph_validated`` and ``graph_label``."""
    kind, predictors = graph_evaluation(bundle, units)
    graph = predictors.get("graph") or {}
    if graph.get("auroc") is None:
        if units == "replies" and bundle.reply_graph is None:
            return False, (
                "no graph on replies in this bundle ('causalguard behaviour reply-matrix', then 'graph "
                "build --replies --out BUNDLE/reply_graph')"
            )
        return False, "graph forecast not evaluated on held-out data"
    baselines = {k: v["auroc"] for k, v in predictors.items() if k != "graph" and v.get("auroc") is not None}
    name, best = max(baselines.items(), key=lambda kv: kv[1]) if baselines else ("none", 0.5)
    ci = graph.get("auroc_ci")
    interval = f" (95% CI {ci[0]:.2f}-{ci[1]:.2f})" if ci else ""
    head = f"{'reply ' if units == 'replies' else ''}graph held-out AUROC {graph['auroc']:.3f}{interval}"
    compared = f"the best baseline ({name} {best:.3f}; {kind})"
    if graph["auroc"] <= best:
        return False, f"{head} does not beat {compared}"
    if not ci:
        return False, f"{head} beats {compared} but has no interval to tell it from chance"
    if ci[0] <= 0.5:
        return False, f"{head} beats {compared} but its interval includes chance (0.5)"
    return True, f"{head} beats {compared}"


def graph_label(bundle: Bundle, units: str = "survey") -> str:
    """The graph forecast's credentials for plans in ``units``: its held-out evaluation against the best
    baseline, and whether plans use it."""
    validated, verdict = _graph_verdict(bundle, units)
    return verdict if validated else f"{verdict}: not used for side effects, the levers' own measured effects are"


def _noise(levers: Sequence[LeverEntry], dims: Sequence[str], catalog: Catalog, units: PlanUnits) -> np.ndarray:
    """Per value, what counts as noise: the survey's threshold, or the median half-width of the levers'
    95% intervals on replies."""
    if units == "survey":
        return np.array([max(catalog.noise_threshold[d], 1e-6) for d in dims])
    halves = np.array(
        [
            [(lever_effect(lever, d, units).ci_high - lever_effect(lever, d, units).ci_low) / 2 for d in dims]
            for lever in levers
        ]
    )
    return np.maximum(np.median(halves, axis=0), 1e-6)


def plan_levers(
    profile: ProfileSpec,
    bundle: Bundle,
    limits: LimitsSpec,
    *,
    name: str = "default",
    sae_available: bool = True,
    units: str = "auto",
    local_kinds: Collection[str] | None = None,
    engine_levers: Collection[str] = (),
) -> Plan:
    """Plan a profile with the levers of a bundle's catalog (the rules are in the module docstring).

    Args:
        profile: The profile's targets, protected values and method.
        bundle: The bundle whose catalog, behaviour measurements and graph the plan uses.
        limits: Caps on the number and strength of levers.
        name: The profile's name, for the plan and its errors.
        sae_available: Whether SAE levers can run (a local HF model with the bundle's SAE loaded).
        units: ``"replies"``, ``"survey"`` or ``"auto"`` (replies when the catalog was measured on them).
        local_kinds: The lever kinds this runtime can run; ``None`` means all.
        engine_levers: Ids of levers the proxy-mode upstream applies itself (its loaded LoRA adapters).

    Returns:
        The plan: its levers, the forecast for every value, reasons and warnings.

    Raises:
        ValueError: The bundle has no catalog.
        PlanInfeasibleError: No combination of levers reaches every target within the protected values'
            tolerances; the message names the conflicting values and the levers excluded and why.

    Example:
        >>> plan = plan_levers(config.profiles["default"], bundle, config.limits)  # doctest: +SKIP
        >>> [lever.id for lever in plan.levers]  # doctest: +SKIP
    """
    if bundle.catalog is None:
        raise ValueError(f"bundle {bundle.path} has no steering catalog to plan with")
    catalog = bundle.catalog
    unit = plan_units(units, catalog)
    dims = catalog.dimensions
    index = {d: k for k, d in enumerate(dims)}
    goals = _goals(profile, catalog, unit)
    tolerances = {v: p.tolerance for v, p in profile.protected.items()}
    label = graph_label(bundle, unit)
    if not goals:
        return Plan(
            name,
            (),
            {},
            _forecast((), dims, goals, tolerances, bundle, unit),
            ("no targets: the model runs unguarded",),
            unit,
            (),
            label,
        )
    levers = eligible_levers(
        catalog, profile.method, limits, sae_available, bundle.behaviour, unit, local_kinds, engine_levers
    )
    excluded = degrading_levers(catalog, bundle.behaviour)
    if unit == "replies" and levers:
        allowed = {lever.id for lever in levers}
        levers = [lever for lever in levers if moves_own_goal(lever, goals)]
        if not levers:
            raise _no_goal_lever(name, goals, catalog, profile.method, excluded, allowed)
        levers, outranked = best_evidenced(levers)
    else:
        outranked = {}
    if not levers:
        raise PlanInfeasibleError(
            f"profile '{name}': no lever passes method={profile.method}, the fluency caps "
            f"(perplexity x{limits.max_perplexity_ratio}, unparseable +{limits.max_unparseable_increase:.0%})"
            + ("" if sae_available else ", this runtime (no SAE levers on a remote model)")
            + (
                f" and reply quality ({len(excluded)} levers degrade replies, are weaker settings or were never "
                "measured on them)"
                if excluded
                else ""
            ),
            [],
        )
    means = np.array([[lever_effect(lever, d, unit).mean for d in dims] for lever in levers])
    halves = np.array(
        [
            [(lever_effect(lever, d, unit).ci_high - lever_effect(lever, d, unit).ci_low) / 2 for d in dims]
            for lever in levers
        ]
    )
    noise = _noise(levers, dims, catalog, unit)
    others = np.array([k for k, d in enumerate(dims) if d not in goals], dtype=int)
    best: tuple[float, tuple[int, ...]] | None = None
    best_any: tuple[float, tuple[int, ...], list[str]] | None = None
    reach: dict[str, tuple[float, tuple[int, ...]]] = {}  # per target: the furthest any combination goes
    for size in range(1, limits.max_levers + 1):
        for combo in itertools.combinations(range(len(levers)), size):
            if not _compatible([levers[i] for i in combo]):
                continue
            rows = list(combo)
            total = means[rows].sum(0)
            half = np.sqrt((halves[rows] ** 2).sum(0))
            score, violations = 0.0, []
            for value, goal in goals.items():
                k = index[value]
                achieved = total[k]
                sign = 1 if goal > 0 else -1
                if value not in reach or sign * achieved > reach[value][0]:
                    reach[value] = (sign * achieved, combo)
                if math.isinf(goal):
                    score -= sign * achieved / noise[k]
                else:
                    score += ((achieved - goal) / noise[k]) ** 2
                beyond = sign * achieved > noise[k] if unit == "survey" else sign * achieved - half[k] > 0
                if unit == "replies" and not any(levers[i].target == value for i in combo):
                    beyond = False  # moved only as another lever's side effect: not relied on
                if not beyond:
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
        error = _infeasible(name, goals, tolerances, [levers[i] for i in best_any[1]], best_any[2], bundle, dims, unit)
        blocked = [
            f"{lever_id} ({why})"
            for lever_id, why in sorted(excluded.items())
            if catalog.lever(lever_id).target in goals
        ]
        if blocked:
            raise PlanInfeasibleError(
                f"{error}\nnot considered because of reply quality (see BEHAVIOUR.md in the "
                f"bundle): {'; '.join(blocked)}",
                error.conflicts,
            )
        raise error
    chosen = tuple(levers[i] for i in best[1])
    forecast = _forecast(chosen, dims, goals, tolerances, bundle, unit)
    warnings = _unreachable(goals, forecast, reach, levers, unit)
    reasons = _reasons(chosen, goals, dims, bundle, unit)
    reasons.append(
        f"best of {len(levers)} eligible levers under method={profile.method}, at most "
        f"{limits.max_levers} combined, side effects on other values weighted {limits.side_effect_weight}"
    )
    degrading = sorted(k for k, why in excluded.items() if why.startswith("degrades"))
    weaker = sum(1 for why in excluded.values() if why.startswith("weaker"))
    unmeasured = sum(1 for why in excluded.values() if why.startswith("not measured"))
    failed = sorted(k for k, why in excluded.items() if why.startswith("did not hold"))
    if degrading:
        reasons.append(f"never planned, their replies degrade: {', '.join(degrading)}")
    if failed:
        reasons.append(f"never planned, did not hold on held-out prompts: {', '.join(failed)}")
    if weaker:
        reasons.append(f"never planned: {weaker} weaker settings of SAE features whose stronger setting stays fluent")
    if unmeasured:
        reasons.append(f"never planned, not measured on replies: {unmeasured} levers")
    if outranked:
        reasons.append(
            "set aside for stronger evidence: " + "; ".join(f"{k} ({why})" for k, why in sorted(outranked.items()))
        )
    return Plan(name, chosen, goals, forecast, tuple(reasons), unit, tuple(warnings), label)


def _reasons(
    chosen: Sequence[LeverEntry], goals: dict[str, float], dims: Sequence[str], bundle: Bundle, unit: PlanUnits
) -> list[str]:
    reasons = [
        f"{lever.id}: survey, {lever.effects[dims[0]].n} personas: "
        + ", ".join(f"{v} {lever.effects[v].mean:+.3f}" for v in goals)
        + (f" (proposed for {lever.target})" if lever.target and lever.target not in goals else "")
        if lever.effects is not None
        else f"{lever.id}: a {lever.kind} lever, measured on replies only"
        for lever in chosen
    ]
    weak = set(bundle.behaviour.weak_values) if bundle.behaviour is not None else set()
    for lever in chosen:
        if lever.replies is not None:
            r = lever.replies
            moved = ", ".join(
                f"{v} {_interval_text(r.effects[v])}" + (" [weak judge]" if v in weak else "") for v in goals
            )
            reasons.append(
                f"{lever.id}: replies, {r.n} pairs: {moved}; {r.degraded}/{r.n} replies outside the "
                f"unsteered quality range (p {r.p_value:.2f}); {r.verdict}: {r.why}"
            )
        elif bundle.behaviour is not None and lever.id in bundle.behaviour.levers:
            b = bundle.behaviour.levers[lever.id]
            moved = ", ".join(
                f"{v} {b.effects[v][0]:+.2f} ({b.effects[v][1]:+.2f} .. {b.effects[v][2]:+.2f})"
                + (" [weak judge]" if v in weak else "")
                for v in goals
                if v in b.effects
            )
            reasons.append(
                f"{lever.id} in replies (judge units): {moved}; {b.degraded_rate:.0%} of replies "
                f"outside the unsteered quality range"
            )
    return reasons


def _interval_text(e: Interval) -> str:
    return f"{e.mean:+.2f} ({e.ci_low:+.2f} .. {e.ci_high:+.2f})"


def _unreachable(
    goals: dict[str, float],
    forecast: Sequence[ValueForecast],
    reach: dict[str, tuple[float, tuple[int, ...]]],
    levers: Sequence[LeverEntry],
    unit: PlanUnits,
) -> list[str]:
    """A finite goal outside the plan's 95% interval: say what the plan and the best single-target
    combination reach instead."""
    out = []
    by_value = {f.value: f for f in forecast}
    for value, goal in goals.items():
        f = by_value[value]
        if math.isinf(goal) or f.low <= goal <= f.high:
            continue
        furthest, combo = reach[value]
        sign = 1 if goal > 0 else -1
        out.append(
            f"{value}: asked {goal:+.3f} ({unit} units) but the plan reaches {f.change:+.3f} (95% CI "
            f"{f.low:+.3f} .. {f.high:+.3f}); the most any allowed combination moves it is "
            f"{sign * furthest:+.3f} ({', '.join(levers[i].id for i in combo)})"
        )
    return out


def _forecast(
    levers: Sequence[LeverEntry],
    dims: Sequence[str],
    goals: dict[str, float],
    tolerances: dict[str, float],
    bundle: Bundle,
    unit: PlanUnits,
) -> tuple[ValueForecast, ...]:
    surveyed = all(lever.effects is not None for lever in levers)
    graph = _graph_forecast(levers, goals, bundle, unit, surveyed)
    out = []
    for value in dims:
        effects = [lever_effect(lever, value, unit) for lever in levers]
        mean = sum(e.mean for e in effects)
        half = math.sqrt(sum(((e.ci_high - e.ci_low) / 2) ** 2 for e in effects))
        role = "target" if value in goals else ("protected" if value in tolerances else "other")
        survey = (
            sum(lever.effects[value].mean for lever in levers if lever.effects is not None)
            if unit == "replies" and surveyed
            else None
        )
        out.append(
            ValueForecast(
                value,
                mean,
                mean - half,
                mean + half,
                graph.get(value, 0.0) if graph is not None else None,
                role,
                tolerances.get(value),
                survey,
            )
        )
    return tuple(out)


def _graph_forecast(
    levers: Sequence[LeverEntry], goals: dict[str, float], bundle: Bundle, unit: PlanUnits, surveyed: bool
) -> dict[str, float] | None:
    """The targets' planned changes pushed through the graph of the plan's units (the survey graph, or
    the reply graph for reply units); None when that graph is not validated (or there is nothing to push)."""
    if not levers or not graph_validated(bundle, unit):
        return None
    if unit == "replies":
        if bundle.reply_graph is None:
            return None
        effects = bundle.reply_graph.effects
        planned = {v: sum(lever_effect(lever, v, unit).mean for lever in levers) for v in goals}
    else:
        if not surveyed:  # the survey graph speaks survey units
            return None
        effects = bundle.effects
        planned = {v: sum(lever.effects[v].mean for lever in levers if lever.effects is not None) for v in goals}
    return {p.value: p.change for p in effects.predict_lever({v: c for v, c in planned.items() if v in effects.nodes})}


def _infeasible(
    name: str,
    goals: dict[str, float],
    tolerances: dict[str, float],
    closest: list[LeverEntry],
    violations: list[str],
    bundle: Bundle,
    dims: Sequence[str],
    unit: PlanUnits,
) -> PlanInfeasibleError:
    lines = [
        f"profile '{name}' is infeasible: no combination of measured levers moves "
        f"{', '.join(goals)} as asked while keeping the protected values within tolerance ({unit} units)."
    ]
    lines.append(f"closest plan: {', '.join(lever.id for lever in closest)}")
    for value in violations:
        effects = [lever_effect(lever, value, unit) for lever in closest]
        moved = sum(e.mean for e in effects)
        if value in goals:
            half = math.sqrt(sum(((e.ci_high - e.ci_low) / 2) ** 2 for e in effects))
            lines.append(
                f"  {value}: not moved beyond noise the intended way (closest plan {moved:+.3f}, "
                f"95% CI {moved - half:+.3f} .. {moved + half:+.3f})"
            )
            continue
        paths = [p for t in goals for p in graph_paths(bundle, t, value)]
        via = "; ".join(paths) if paths else "no graph path from a target: the levers act on it directly"
        lines.append(f"  {value}: predicted change {moved:+.3f} exceeds tolerance {tolerances[value]} (graph: {via})")
    lines.append("fix: loosen the tolerances, drop a target, allow more levers (limits.max_levers) or another method")
    return PlanInfeasibleError("\n".join(lines), violations)
