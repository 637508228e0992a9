"""``causalguard behaviour validate``: do a config's plans hold in the replies, on prompts and personas
that nothing was tuned on?

For every profile (the config's, plus one per value and direction with ``--every-value``):

1. plan it as the guard would (``plan_levers``, the config's limits and units); an infeasible
   profile is recorded as refused, with the planner's explanation;
2. generate replies to the held-out **test** prompts for fresh personas (a persona seed used nowhere
   else), guarded (the plan's role instructions and SAE edits) and unguarded (the same persona, no
   levers), through the guard's own generation path, checkpointed like every reply run;
3. judge both for every value and measure reply quality under the served context: per value, the
   change (guarded minus unguarded, same persona and prompt) with a 95% t-interval; degraded replies
   against unguarded ones (one-sided Fisher exact); and, for the values that moved beyond noise,
   whether the plan's forecast had the same sign.

A profile passes when every target moved the intended way beyond noise, replies are not degraded,
and the forecast's sign agrees for at least 80% of the values that moved. With judges that selected
nothing (``other_judges``, see ``second_judge``), every target must also move the intended way beyond
noise by the second judge, and no check judge may see it move significantly the wrong way: levers are
chosen on the probe judge, so its estimate alone may be inflated. Those judges score only the targets.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from causalguard.adapters.hf.sae import load_sae
from causalguard.adapters.hf.vectors import load_vectors
from causalguard.bundle.format import Bundle
from causalguard.config.schema import GuardConfig, ProfileSpec, TargetSpec
from causalguard.graphs.behaviour.replies import ReplyCondition, ReplySettings, ReplyStore, run_steered_replies
from causalguard.graphs.behaviour.reply_backends import ReplyBackend
from causalguard.graphs.behaviour.report import (
    bundle_adapters,
    finite_json,
    reply_personas,
    served_system_prompt,
    t_interval,
)
from causalguard.graphs.behaviour.score_cache import cached_reply_quality
from causalguard.graphs.behaviour.second_judge import OtherJudge, opposes, sees
from causalguard.judging.judge import load_probe_judge
from causalguard.judging.prompt_sets import load_prompts
from causalguard.judging.reply_quality import compare_degradation, cross_prompt_sameness
from causalguard.models.loaded import LoadedModel
from causalguard.planning.planner import Plan, PlanInfeasibleError, plan_levers, runnable_kinds
from causalguard.runtime.plan_conditions import plan_interventions

VALIDATION_FILE = "validation.json"


@dataclass(frozen=True)
class ValidateSettings:
    prompts: int = 20  # test prompts, balanced over values
    prompt_offset: int = 0  # skip this many of the balanced order (a slice no earlier validation read)
    personas: int = 2  # the config's system prompt plus fresh generated personas
    persona_seed: int = 3000  # used by no other run (bundle 0, catalog 1000, behaviour report 2000)
    replies: ReplySettings = field(default_factory=ReplySettings)
    batch_size: int = 16
    min_sign_agreement: float = 0.8


def every_value_profiles(dimensions: Sequence[str]) -> dict[str, ProfileSpec]:
    """One profile per value and direction: ``<value>-up`` and ``<value>-down``."""
    out = {}
    for d in dimensions:
        for direction, suffix in (("increase", "up"), ("decrease", "down")):
            out[f"{d}-{suffix}"] = ProfileSpec(targets={d: TargetSpec(direction=direction)})  # type: ignore[arg-type]
    return out


def _plans(
    config: GuardConfig,
    profiles: dict[str, ProfileSpec],
    bundle: Bundle,
    sae_available: bool,
    vectors_available: bool = False,
    adapters_available: bool = False,
) -> tuple[dict[str, Plan], dict[str, str]]:
    plans, refused = {}, {}
    local_kinds = runnable_kinds(
        local_model=True, sae_loaded=sae_available, vectors_loaded=vectors_available, adapters_loaded=adapters_available
    )
    for name, profile in profiles.items():
        if not profile.targets:
            continue
        try:
            plans[name] = plan_levers(
                profile,
                bundle,
                config.limits,
                name=name,
                sae_available=sae_available,
                units=config.units,
                local_kinds=local_kinds,
            )
        except PlanInfeasibleError as exc:
            refused[name] = str(exc)
    return plans, refused


def validate_profiles(
    lm: LoadedModel,
    bundle: Bundle,
    config: GuardConfig,
    profiles: dict[str, ProfileSpec],
    work: Path,
    settings: ValidateSettings,
    *,
    restart: bool = False,
    log: Callable[[str], None] = print,
    backend: ReplyBackend | None = None,
    other_judges: Sequence[OtherJudge] = (),
) -> dict[str, Any]:
    if bundle.catalog is None or bundle.path is None or bundle.behaviour is None:
        raise ValueError("validation needs a bundle folder with a catalog and a behaviour report")
    catalog = bundle.catalog
    dims = catalog.dimensions
    sae = load_sae(bundle.sae_dir, lm) if bundle.sae_dir is not None else None
    vectors = (
        load_vectors(
            bundle.vectors_dir, hidden_size=lm.hidden_size, num_layers=lm.num_layers, fingerprint=lm.fingerprint
        )
        if bundle.vectors_dir is not None
        else None
    )
    adapters = bundle_adapters(bundle, lm)
    plans, refused = _plans(config, profiles, bundle, sae is not None, vectors is not None, bool(adapters))
    for name, why in refused.items():
        log(f"{name}: refused by the planner: {why.splitlines()[0]}")
    judge = load_probe_judge(bundle.path, lm)
    calibration = bundle.behaviour.calibration
    prompts = list(load_prompts(dimensions=dims).split("test").balanced_slice(settings.prompt_offset, settings.prompts))
    personas = [
        p if p.id != "assistant" else type(p)("operator", config.system_prompt)
        for p in reply_personas(settings.personas, settings.persona_seed)
    ]
    condition_of = {name: "plan:" + "+".join(lever.id for lever in plan.levers) for name, plan in plans.items()}
    conditions = [ReplyCondition("none")]
    for name, plan in plans.items():  # profiles with the same levers share one condition
        if condition_of[name] not in {c.id for c in conditions}:
            negative = plan.negative_instructions()
            guided = plan.guided_lever
            conditions.append(
                ReplyCondition(
                    condition_of[name],
                    tuple(plan.role_instructions()),
                    plan_interventions(plan, sae, catalog, vectors, adapters),
                    guided.guidance_scale if guided is not None else None,
                    tuple(negative or ()),
                )
            )
    identity = {
        "model": lm.fingerprint,
        "settings": asdict(settings.replies),
        "prompts": [p.id for p in prompts],
        "personas": [asdict(p) for p in personas],
        "batch_size": settings.batch_size,
        "split": "test",
        "plans": {name: [lever.id for lever in plan.levers] for name, plan in plans.items()},
    }
    store = ReplyStore(work, identity, restart=restart)
    log(f"replies: {len(conditions)} conditions x {len(personas)} personas x {len(prompts)} test prompts")
    replies = run_steered_replies(
        lm,
        conditions,
        personas,
        prompts,
        settings.replies,
        store,
        batch_size=settings.batch_size,
        log=log,
        backend=backend,
    )
    keys = [(c.id, p.id, q.id) for c in conditions for p in personas for q in prompts]
    texts = [replies[k].text for k in keys]
    log("judging and measuring reply quality ...")
    scores = judge.score(texts)
    system_of = {p.id: p.system_prompt for p in personas}
    instructions = {c.id: c.instructions for c in conditions}
    text_of = {q.id: q.text for q in prompts}
    systems = [served_system_prompt(system_of[k[1]], instructions[k[0]]) for k in keys]
    quality = cached_reply_quality(lm, work, keys, [text_of[k[2]] for k in keys], texts, systems)
    row = {k: i for i, k in enumerate(keys)}
    sameness = cross_prompt_sameness(texts, [f"{k[0]}|{k[1]}" for k in keys], [k[2] for k in keys])
    quality = [dataclasses.replace(q, sameness=x) for q, x in zip(quality, sameness, strict=True)]
    base_flags = [calibration.degraded(quality[row[("none", p.id, q.id)]]) for p in personas for q in prompts]
    effects_args = (plans, condition_of, keys, texts, personas, prompts, log, work)
    second_judge = next((o for o in other_judges if o.role == "second"), None)
    second = None if second_judge is None else _other_judge_effects(second_judge, *effects_args)
    checks = {f"{o.model} {o.kind}": _other_judge_effects(o, *effects_args) for o in other_judges if o.role == "check"}
    results = {}
    for name, plan in plans.items():
        cid = condition_of[name]
        diffs = np.stack(
            [scores[row[(cid, p.id, q.id)]] - scores[row[("none", p.id, q.id)]] for p in personas for q in prompts]
        )
        measured = {d: t_interval(diffs[:, k]) for k, d in enumerate(dims)}
        flags = [calibration.degraded(quality[row[(cid, p.id, q.id)]]) for p in personas for q in prompts]
        degradation = compare_degradation(flags, base_flags)
        results[name] = _verdict(
            plan,
            measured,
            degradation.as_dict(),
            settings.min_sign_agreement,
            None if second is None else second.get(name, {}),
            {label: by_profile.get(name, {}) for label, by_profile in checks.items()},
        )
        # everyday traffic for the lever: the prompts not tagged with its target (what it was not chosen on)
        results[name]["untagged"] = {
            value: t_interval(
                np.asarray(
                    [
                        scores[row[(cid, p.id, q.id)]][dims.index(value)]
                        - scores[row[("none", p.id, q.id)]][dims.index(value)]
                        for p in personas
                        for q in prompts
                        if value not in q.values
                    ]
                )
            )
            for value in plan.goals
        }
        results[name]["example"] = {
            "prompt": prompts[0].text,
            "guarded": replies[(cid, personas[0].id, prompts[0].id)].text,
            "unguarded": replies[("none", personas[0].id, prompts[0].id)].text,
        }
    doc = {
        "model": lm.name,
        "units": next(iter(plans.values())).units if plans else config.units,
        "prompts": [q.id for q in prompts],
        "prompt_split": "test",
        "prompt_offset": settings.prompt_offset,
        "persona_seed": settings.persona_seed,
        "personas": [asdict(p) for p in personas],
        "replies": asdict(settings.replies),
        "second_judge": next((o.describe() for o in other_judges if o.role == "second"), None),
        "check_judges": [o.describe() for o in other_judges if o.role == "check"],
        "profiles": results,
        "refused": refused,
    }
    (work / VALIDATION_FILE).write_text(json.dumps(finite_json(doc), indent=2) + "\n")
    return doc


def _other_judge_effects(
    judge: OtherJudge,
    plans: dict[str, Plan],
    condition_of: dict[str, str],
    keys: Sequence[tuple[str, str, str]],
    texts: Sequence[str],
    personas: Sequence[Any],
    prompts: Sequence[Any],
    log: Callable[[str], None],
    work: Path,
) -> dict[str, dict[str, dict[str, float]]]:
    """Per profile, a judge's change on each of its targets (guarded minus unguarded, 95% t). Scores are
    kept in ``work`` per judge kind and target value, 32 replies at a time (a contrast judge is slow: a
    rerun resumes)."""
    row = {k: i for i, k in enumerate(keys)}
    out: dict[str, dict[str, dict[str, float]]] = {}
    targets = sorted({v for plan in plans.values() for v in plan.goals})
    log(f"{judge.role} judge ({judge.model}, {judge.kind}) on {', '.join(targets)} ...")
    for value in targets:
        wanted = {condition_of[name] for name, plan in plans.items() if value in plan.goals} | {"none"}
        chosen = [k for k in keys if k[0] in wanted]
        values = judge.target_scores(value, work, chosen, texts, row, log)
        scored = dict(zip(chosen, values, strict=True))
        for name, plan in plans.items():
            if value not in plan.goals:
                continue
            cid = condition_of[name]
            diffs = np.asarray(
                [scored[(cid, p.id, q.id)] - scored[("none", p.id, q.id)] for p in personas for q in prompts]
            )
            out.setdefault(name, {})[value] = t_interval(diffs)
    return out


def _verdict(
    plan: Plan,
    measured: dict[str, dict[str, float]],
    quality: dict[str, Any],
    min_agreement: float,
    second: dict[str, dict[str, float]] | None = None,
    checks: dict[str, dict[str, dict[str, float]]] | None = None,
) -> dict[str, Any]:
    moved = [v for v, e in measured.items() if e["ci_low"] > 0 or e["ci_high"] < 0]
    agree = [v for v in moved if np.sign(plan.forecast_for(v).change) == np.sign(measured[v]["mean"])]
    targets = {}
    for value, goal in plan.goals.items():
        e = measured[value]
        targets[value] = bool(e["ci_low"] > 0) if goal > 0 else bool(e["ci_high"] < 0)
    agreement = len(agree) / len(moved) if moved else None
    confirmed = None
    if second is not None:
        confirmed = {v: sees(second[v], goal) for v, goal in plan.goals.items()}
    opposed = {
        v: sorted(label for label, by_value in (checks or {}).items() if v in by_value and opposes(by_value[v], goal))
        for v, goal in plan.goals.items()
    }
    if checks:  # a check judge that sees a target move the wrong way takes the second judge's yes away
        confirmed = {v: (True if confirmed is None else confirmed[v]) and not opposed[v] for v in plan.goals}
    passed = (
        all(targets.values())
        and not quality["is_degraded"]
        and (agreement is None or agreement >= min_agreement)
        and (confirmed is None or all(confirmed.values()))
    )
    additivity = None
    if len(plan.levers) >= 2:  # the forecast is the sum of single-lever effects (dev prompts): how far off?
        misses = {v: measured[v]["mean"] - plan.forecast_for(v).change for v in measured}
        additivity = {
            "mean_abs_miss": float(np.mean([abs(m) for m in misses.values()])),
            "target_miss": {v: misses[v] for v in plan.goals},
        }
    return {
        "levers": [lever.id for lever in plan.levers],
        "units": plan.units,
        "additivity": additivity,
        "forecast": {f.value: {"change": f.change, "low": f.low, "high": f.high} for f in plan.forecast},
        "measured": measured,
        "target_moved_as_intended": targets,
        "quality": quality,
        "second_judge": second,
        "check_judges": checks or {},
        "check_judges_oppose": {v: names for v, names in opposed.items() if names},
        "second_judge_confirms": confirmed,
        "moved_beyond_noise": moved,
        "sign_agreement": agreement,
        "passed": passed,
    }


def render_validation(doc: dict[str, Any]) -> str:
    lines = [
        f"Held-out validation on {doc['model']}: {len(doc['prompts'])} test prompts x {len(doc['personas'])} "
        f"fresh personas, {doc['units']} units (change = guarded minus unguarded, 95% CI)",
        "",
        "| profile | levers | target change (95% CI) | forecast | moved as intended | second judge (95% CI) "
        "| degraded (unguarded) | sign agreement (values moved) | passed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in doc["profiles"].items():
        for value in r["target_moved_as_intended"]:
            e = r["measured"][value]
            f = r["forecast"][value]
            q = r["quality"]
            agreement = "n/a" if r["sign_agreement"] is None else f"{r['sign_agreement']:.0%}"
            second = (r.get("second_judge") or {}).get(value)
            confirms = (r.get("second_judge_confirms") or {}).get(value)
            judged = (
                "not run"
                if second is None
                else f"{second['mean']:+.4f} ({second['ci_low']:+.4f}, "
                f"{second['ci_high']:+.4f}) {'yes' if confirms else 'no'}"
            )
            for label, by_value in (r.get("check_judges") or {}).items():
                if value in by_value:
                    c = by_value[value]
                    wrong = label in (r.get("check_judges_oppose") or {}).get(value, [])
                    judged += (
                        f"; check {label} {c['mean']:+.4f} ({c['ci_low']:+.4f}, {c['ci_high']:+.4f})"
                        f"{' the wrong way' if wrong else ''}"
                    )
            lines.append(
                f"| {name} | {', '.join(r['levers'])} | {e['mean']:+.3f} ({e['ci_low']:+.3f}, "
                f"{e['ci_high']:+.3f}) | {f['change']:+.3f} | "
                f"{'yes' if r['target_moved_as_intended'][value] else 'no'} | {judged} | "
                f"{q['degraded']}/{q['n']} ({q['baseline_degraded']}/{q['baseline_n']}) | {agreement} "
                f"({len(r['moved_beyond_noise'])}) | {'yes' if r['passed'] else 'no'} |"
            )
    untagged = {n: r["untagged"] for n, r in doc["profiles"].items() if r.get("untagged")}
    if untagged:
        lines += [
            "",
            "Everyday traffic for each lever: the target's change on the test prompts *not* tagged with it:",
            "",
        ]
        for name, by_value in untagged.items():
            lines.append(
                f"- {name}: "
                + ", ".join(
                    f"{v} {e['mean']:+.3f} ({e['ci_low']:+.3f}, {e['ci_high']:+.3f}; {e['n']} pairs)"
                    for v, e in by_value.items()
                )
            )
    pairs = {n: r["additivity"] for n, r in doc["profiles"].items() if r.get("additivity")}
    if pairs:
        lines += [
            "",
            "Additivity (plans combining levers; forecast = sum of the single levers' effects on dev "
            "prompts, measured = the combination on test prompts):",
            "",
        ]
        for name, a in pairs.items():
            misses = ", ".join(f"{v} {m:+.3f}" for v, m in a["target_miss"].items())
            lines.append(f"- {name}: mean |measured - forecast| over values {a['mean_abs_miss']:.3f}; targets {misses}")
    if doc["refused"]:
        lines += ["", "Refused by the planner (no lever combination meets them without degrading replies):", ""]
        for name, why in doc["refused"].items():
            lines.append(f"- {name}: {why.splitlines()[0]}")
    return "\n".join(lines) + "\n"
