"""``causalguard behaviour report``: what every lever does to the replies users read.

For a model and its bundle (catalog, SAE):

1. The judge: fitted on the labelled set's dev half, validated on its test half (``judge_fit``);
   saved into the bundle (``judge.json``, ``judge.safetensors``).
2. Replies: the dev prompts (a sample balanced over values) x personas, unsteered (``none``) and
   under every catalog lever, generated through the guard's code path (``replies``), checkpointed.
3. Reply quality of every reply; the calibration (the unsteered replies' own 95% range); per lever,
   how many replies are degraded and whether more often than unsteered (one-sided Fisher exact).
4. Behavioural effect per lever on every value: judge score steered minus unsteered, same persona
   and prompt; mean and 95% t-interval over the pairs. Next to it the catalog's survey effect, with
   sign agreement and correlation between the two per lever kind.

Written to ``behaviour.json`` (schema ``causalguard.behaviour/1``) and ``BEHAVIOUR.md`` in the bundle.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from causalguard.adapters.hf.interventions import FeatureEdit, SaeIntervention, Scope
from causalguard.adapters.hf.sae import LoadedSae, load_sae
from causalguard.adapters.hf.value_adapters import ValueAdapter, load_value_adapters
from causalguard.adapters.hf.vectors import VectorSet, load_vectors
from causalguard.artifacts import (
    BEHAVIOUR_FILE,
    BEHAVIOUR_REPORT,
    BEHAVIOUR_SCHEMA,
    CATALOG_FILE,
    CATALOG_SCHEMA_REPLIES,
)
from causalguard.bundle.catalog import REPLY_ONLY_KINDS, Catalog, LeverEntry, save_catalog
from causalguard.bundle.format import Bundle, load_bundle
from causalguard.bundle.integrity import seal_bundle
from causalguard.bundle.lever import LeverSpec
from causalguard.errors import ConfigError
from causalguard.graphs.behaviour.confirmation_file import CONFIRMATION_FILE, confirmed_catalog, read_confirmation
from causalguard.graphs.behaviour.held_out import HELD_OUT_FILE, held_out_catalog, read_held_out
from causalguard.graphs.behaviour.judge_fit import fit_probe_judge
from causalguard.graphs.behaviour.replies import (
    Persona,
    Reply,
    ReplyCondition,
    ReplySettings,
    ReplyStore,
    run_steered_replies,
)
from causalguard.graphs.behaviour.reply_backends import ReplyBackend
from causalguard.graphs.behaviour.score_cache import cached_reply_quality, cached_scores
from causalguard.graphs.levers.verdicts import attach_replies
from causalguard.judging.labelled import load_labelled
from causalguard.judging.prompt_sets import Prompt, load_prompts
from causalguard.judging.reply_quality import (
    QualityCalibration,
    ReplyQuality,
    compare_degradation,
    cross_prompt_sameness,
)
from causalguard.models.loaded import LoadedModel
from causalguard.roles.personas import generate_personas

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."


@dataclass(frozen=True)
class ReportSettings:
    prompts: int = 20  # dev prompts, balanced over values
    personas: int = 2  # the default assistant prompt plus held-out generated personas
    persona_seed: int = 2000  # apart from the bundle's (0) and the catalog's (1000) personas
    levers: tuple[str, ...] | None = None  # catalog lever ids; None = all
    extra: tuple[LeverSpec, ...] = ()  # levers not in the catalog (sweeps, wordings): measured in replies only
    replies: ReplySettings = field(default_factory=ReplySettings)
    batch_size: int = 16


def reply_personas(n: int, seed: int) -> list[Persona]:
    """The operator's usual system prompt, then held-out generated personas (as chat system prompts)."""
    out = [Persona("assistant", DEFAULT_SYSTEM_PROMPT)]
    out += [Persona(f"persona:{seed}:{i}", p.system_prompt) for i, p in enumerate(generate_personas(n - 1, seed=seed))]
    return out[:n]


def bundle_adapters(bundle: Bundle, lm: LoadedModel) -> dict[str, ValueAdapter]:
    """The bundle's value adapters (``adapters/``), checked against ``lm`` (empty without the folder)."""
    if bundle.adapters_dir is None:
        return {}
    return load_value_adapters(bundle.adapters_dir, lm.model, fingerprint=lm.fingerprint)


def lever_reply_condition(
    lever: LeverEntry | LeverSpec,
    sae: LoadedSae | None,
    catalog: Catalog,
    vectors: VectorSet | None = None,
    adapters: Mapping[str, ValueAdapter] | None = None,
) -> ReplyCondition:
    """A catalog lever as a reply condition, applied as the guard applies it (SAE: additive, all tokens;
    vector: generated tokens, or all with its vector_scope; guided: the role wording with its twin's;
    adapter: at its scale)."""
    if lever.kind == "adapter":
        if not adapters or lever.adapter is None or lever.adapter not in adapters:
            raise ValueError(
                f"lever {lever.id} needs the bundle's value adapter {lever.adapter!r} (adapters/), which is not loaded"
            )
        return ReplyCondition(lever.id, (), (adapters[lever.adapter].intervention(lever.strength),))
    if lever.kind == "role":
        return ReplyCondition(lever.id, (lever.text or "",))
    if lever.kind == "guided":
        return ReplyCondition(
            lever.id,
            (lever.text or "",),
            guidance_scale=lever.guidance_scale,
            negative_instructions=(lever.negative_text,) if lever.negative_text else (),
        )
    if lever.kind == "pair":
        if vectors is None or lever.target is None:
            raise ValueError(f"lever {lever.id} needs the bundle's steering vectors (vectors/), which are not loaded")
        vector = vectors.intervention(lever.vector_key, lever.strength, Scope(lever.vector_tokens))
        return ReplyCondition(
            lever.id,
            (lever.text or "",),
            (vector,),
            guidance_scale=lever.guidance_scale,
            negative_instructions=(lever.negative_text,) if lever.negative_text else (),
        )
    if lever.kind == "vector":
        if vectors is None or lever.target is None:
            raise ValueError(f"lever {lever.id} needs the bundle's steering vectors (vectors/), which are not loaded")
        scope = Scope(lever.vector_tokens)
        return ReplyCondition(lever.id, (), (vectors.intervention(lever.vector_key, lever.strength, scope),))
    if sae is None or catalog.sae is None or lever.feature is None:
        raise ValueError(f"lever {lever.id} needs the bundle's SAE")
    value = sae.additive_value(lever.feature, lever.strength, catalog.sae.residual_norm)
    return ReplyCondition(lever.id, (), (SaeIntervention(sae, (FeatureEdit(lever.feature, "add", value),)),))


def served_system_prompt(persona_prompt: str | None, instructions: Sequence[str]) -> str | None:
    """The system message a reply was served with (as ``compose_messages`` builds it)."""
    parts = [p for p in (persona_prompt, *instructions) if p]
    return "\n\n".join(parts) if parts else None


def t_interval(diffs: np.ndarray) -> dict[str, float]:
    n = len(diffs)
    mean = float(diffs.mean()) if n else 0.0
    if n < 2:
        return {"mean": mean, "ci_low": mean, "ci_high": mean, "n": n}
    from scipy import stats

    half = float(stats.t.ppf(0.975, n - 1) * diffs.std(ddof=1) / math.sqrt(n))
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def lever_effects(
    scores: dict[tuple[str, str, str], np.ndarray],
    lever: str,
    personas: Sequence[Persona],
    prompts: Sequence[Prompt],
    dims: Sequence[str],
) -> dict[str, dict[str, float]]:
    diffs = np.stack([scores[(lever, p.id, q.id)] - scores[("none", p.id, q.id)] for p in personas for q in prompts])
    return {d: t_interval(diffs[:, k]) for k, d in enumerate(dims)}


def agreement(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Behavioural vs survey effects: on-target sign agreement, sign agreement where the behavioural
    effect is beyond noise, and Pearson correlation over every (lever, value) pair."""
    out: dict[str, Any] = {}
    for kind in ("role", "sae", "all"):
        chosen = [r for r in rows if kind == "all" or r["kind"] == kind]
        if not chosen:
            continue
        chosen = [r for r in chosen if r.get("survey_effects") is not None]
        if not chosen:
            continue
        target = [r for r in chosen if r["target"]]
        on_target = [
            np.sign(r["effects"][r["target"]]["mean"]) == np.sign(r["survey_effects"][r["target"]]) for r in target
        ]
        pairs = [(r["effects"][d]["mean"], r["survey_effects"][d]) for r in chosen for d in r["effects"]]
        beyond = [
            np.sign(b) == np.sign(s)
            for r in chosen
            for d in r["effects"]
            for b, s in [(r["effects"][d]["mean"], r["survey_effects"][d])]
            if r["effects"][d]["ci_low"] > 0 or r["effects"][d]["ci_high"] < 0
        ]
        b, s = np.array(pairs).T
        corr = float(np.corrcoef(b, s)[0, 1]) if len(pairs) > 2 and b.std() > 0 and s.std() > 0 else float("nan")
        out[kind] = {
            "levers": len(chosen),
            "on_target_sign_agreement": float(np.mean(on_target)) if target else None,
            "sign_agreement_beyond_noise": float(np.mean(beyond)) if beyond else None,
            "pairs_beyond_noise": len(beyond),
            "pearson_r": corr,
        }
    return out


def build_behaviour_report(
    lm: LoadedModel,
    bundle_dir: Path,
    work: Path,
    settings: ReportSettings,
    *,
    restart: bool = False,
    log: Callable[[str], None] = print,
    backend: ReplyBackend | None = None,
) -> dict[str, Any]:
    started = time.time()
    bundle = load_bundle(bundle_dir, expected_fingerprint=lm.fingerprint)
    catalog = bundle.catalog
    if catalog is None:
        raise ValueError(f"{bundle_dir}: the bundle has no steering catalog; run 'causalguard levers measure'")
    dims = list(catalog.dimensions)
    if settings.levers is not None:
        unknown = sorted(set(settings.levers) - {e.id for e in catalog.levers})
        if unknown:
            raise ConfigError.single(
                str(bundle_dir / CATALOG_FILE),
                f"unknown lever ids: {', '.join(unknown)}",
                field="--levers",
                hint="see 'causalguard levers show BUNDLE' for the ids",
            )
    sae = load_sae(bundle.sae_dir, lm) if bundle.sae_dir is not None else None
    vectors = (
        load_vectors(
            bundle.vectors_dir, hidden_size=lm.hidden_size, num_layers=lm.num_layers, fingerprint=lm.fingerprint
        )
        if bundle.vectors_dir is not None
        else None
    )
    adapters = bundle_adapters(bundle, lm)

    log("fitting the judge on the labelled dev half ...")
    fitted = fit_probe_judge(lm, load_labelled(dimensions=dims), dims)
    validation = fitted.validation
    log(
        f"judge: layer {fitted.judge.weights.layer}, test AUROC min {validation['min_auroc']:.3f} "
        f"mean {validation['mean_auroc']:.3f}"
    )

    prompts = list(load_prompts(dimensions=dims).split("dev").balanced(settings.prompts))
    personas = reply_personas(settings.personas, settings.persona_seed)
    chosen = [e for e in catalog.levers if settings.levers is None or e.id in settings.levers]
    clash = sorted({e.id for e in settings.extra} & {e.id for e in catalog.levers})
    if clash:
        raise ValueError(f"extra levers already in the catalog: {', '.join(clash)}")
    levers: list[LeverEntry | LeverSpec] = [*chosen, *settings.extra]
    if len({e.id for e in levers}) != len(levers):
        raise ValueError("lever ids repeat among the extra levers")
    conditions = [ReplyCondition("none")] + [lever_reply_condition(e, sae, catalog, vectors, adapters) for e in levers]
    identity = {
        "model": lm.fingerprint,
        "settings": asdict(settings.replies),
        "prompts": [p.id for p in prompts],
        "personas": [asdict(p) for p in personas],
        "batch_size": settings.batch_size,
    }
    store = ReplyStore(work, identity, restart=restart)
    log(f"replies: {len(conditions)} conditions x {len(personas)} personas x {len(prompts)} prompts")
    t0 = time.time()
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
    generation_s = time.time() - t0
    keys = [(c.id, p.id, q.id) for c in conditions for p in personas for q in prompts]
    ordered = [replies[k] for k in keys]
    text_of = {q.id: q.text for q in prompts}

    log("judging and measuring reply quality ...")
    instructions = {c.id: c.instructions for c in conditions}
    system_of = {p.id: p.system_prompt for p in personas}
    systems = [served_system_prompt(system_of[r.persona], instructions[r.condition]) for r in ordered]
    t1 = time.time()
    w = fitted.judge.weights
    judge_id = hashlib.sha256(w.directions.tobytes() + w.midpoints.tobytes() + w.mean.tobytes()).hexdigest()[:16]
    judged = cached_scores(
        work / "judge_scores.json",
        f"probe:{w.layer}:{judge_id}",
        keys,
        lambda idx: fitted.judge.score([ordered[i].text for i in idx]).tolist(),
    )
    judge_s = time.time() - t1
    t2 = time.time()
    quality = cached_reply_quality(
        lm,
        work,
        keys,
        [text_of[r.prompt] for r in ordered],
        [r.text for r in ordered],
        systems,
    )
    sameness = cross_prompt_sameness(
        [r.text for r in ordered], [f"{r.condition}|{r.persona}" for r in ordered], [r.prompt for r in ordered]
    )
    quality = [dataclasses.replace(q, sameness=x) for q, x in zip(quality, sameness, strict=True)]
    quality_s = time.time() - t2
    scores = {k: np.asarray(judged[i], dtype=float) for i, k in enumerate(keys)}
    qual = {k: quality[i] for i, k in enumerate(keys)}
    base_q = [qual[("none", p.id, q.id)] for p in personas for q in prompts]
    calibration = QualityCalibration.fit(base_q)
    base_flags = [calibration.degraded(q) for q in base_q]

    rows = []
    for entry in levers:
        lever_q = [qual[(entry.id, p.id, q.id)] for p in personas for q in prompts]
        effects = lever_effects(scores, entry.id, personas, prompts, dims)
        degradation = compare_degradation([calibration.degraded(q) for q in lever_q], base_flags)
        target = entry.target
        moved = None
        if target is not None:
            e = effects[target]
            moved = bool(e["ci_low"] > 0) if entry.direction > 0 else bool(e["ci_high"] < 0)
        survey = (
            {d: entry.effects[d].mean for d in dims}
            if isinstance(entry, LeverEntry) and entry.effects is not None
            else None
        )
        rows.append(
            {
                "id": entry.id,
                "kind": entry.kind,
                "target": target,
                "direction": entry.direction,
                "spec": lever_spec_dict(entry),
                "in_survey_catalog": isinstance(entry, LeverEntry),
                "effects": effects,
                "survey_effects": survey,
                "moves_target_as_intended": moved,
                "quality": degradation.as_dict(),
                "quality_means": _quality_means(lever_q),
                "flags": _flag_counts(calibration, lever_q),
            }
        )
    settings_doc = {
        "prompts": [p.id for p in prompts],
        "prompt_split": "dev",
        "personas": [asdict(p) for p in personas],
        "replies": asdict(settings.replies),
        "judge": "probe",
        "judge_layer": fitted.judge.weights.layer,
    }
    rows = merged_rows(bundle_dir / BEHAVIOUR_FILE, settings_doc, rows, log)
    base_scores = np.stack([scores[("none", p.id, q.id)] for p in personas for q in prompts])
    judge_means = {d: float(base_scores[:, k].mean()) for k, d in enumerate(dims)}
    doc = {
        "schema": BEHAVIOUR_SCHEMA,
        "model": {"name": lm.name, "fingerprint": lm.fingerprint},
        "dimensions": dims,
        "settings": settings_doc,
        "judge": {"layer_scores_dev_cv": {str(k): v for k, v in fitted.layer_scores.items()}, **validation},
        "quality_calibration": calibration.as_dict(),
        "baseline": {
            "quality_means": _quality_means(base_q),
            "flags": _flag_counts(calibration, base_q),
            "judge_means": judge_means,
        },
        "levers": rows,
        "agreement": agreement(rows),
        "examples": merged_examples(
            bundle_dir / BEHAVIOUR_FILE,
            settings_doc,
            _examples(
                replies,
                [
                    r
                    for r in rows
                    if ("none", personas[0].id, prompts[0].id) in replies
                    and (r["id"], personas[0].id, prompts[0].id) in replies
                ],
                personas,
                prompts,
            ),
        ),
        "timing": {
            "replies": len(keys),
            "generation_seconds": generation_s,
            "judge_seconds": judge_s,
            "quality_seconds": quality_s,
            "total_seconds": time.time() - started,
        },
    }
    fitted.judge.save(
        bundle_dir,
        {
            "fitted_on": "labelled_replies.jsonl dev half",
            "validation": {k: validation[k] for k in ("min_auroc", "mean_auroc", "weak_values")},
        },
    )
    (bundle_dir / BEHAVIOUR_FILE).write_text(json.dumps(finite_json(doc), indent=2) + "\n")
    (bundle_dir / BEHAVIOUR_REPORT).write_text(render_behaviour(doc))
    seal_bundle(bundle_dir)
    # levers confirmed earlier keep their confirmation's effects and verdicts over this screening
    # and levers tested on held-out prompts keep that test's outcome
    confirmed = read_confirmation(bundle_dir, dims)
    held_out = read_held_out(bundle_dir)
    catalog = with_reply_only_levers(catalog, [e for e in levers if isinstance(e, LeverSpec)])
    save_catalog(
        held_out_catalog(confirmed_catalog(attach_replies(catalog, rows, judge_means), confirmed), held_out), bundle_dir
    )
    if confirmed:
        log(f"re-applied {CONFIRMATION_FILE} to {len(confirmed)} confirmed levers")
    if held_out["levers"]:
        log(f"re-applied {HELD_OUT_FILE} to {len(held_out['levers'])} levers tested on held-out prompts")
    log(f"catalog {CATALOG_SCHEMA_REPLIES}: reply effects and verdicts attached to the catalog's levers")
    return doc


def lever_spec_dict(lever: LeverEntry | LeverSpec) -> dict[str, Any]:
    """What the runtime needs to apply a lever (behaviour-only levers have no catalog entry)."""
    return {
        "kind": lever.kind,
        "target": lever.target,
        "direction": lever.direction,
        "strength": lever.strength,
        "feature": lever.feature,
        "text": lever.text,
        "guidance_scale": lever.guidance_scale,
        "negative_text": lever.negative_text,
        "layer": lever.layer,
        "adapter": lever.adapter,
        "vector_scope": lever.vector_scope,
        "vector_name": lever.vector_name,
    }


def with_reply_only_levers(catalog: Catalog, extra: Sequence[LeverSpec]) -> Catalog:
    """``catalog`` with the guided and vector levers of ``extra`` added as catalog levers (measured on
    replies only: no survey effects). Other extras (role wordings, SAE sweeps) join the catalog only
    through 'levers extend', which surveys them."""
    known = {e.id for e in catalog.levers}
    added = [
        LeverEntry(
            **asdict(spec),
            source=spec.kind,
            effects=None,
            counts=None,
            intended_share=None,
            specificity=None,
            fluency=None,
        )
        for spec in extra
        if spec.kind in REPLY_ONLY_KINDS and spec.id not in known
    ]
    return catalog.model_copy(update={"levers": [*catalog.levers, *added]}) if added else catalog


def merged_rows(
    path: Path, settings_doc: dict[str, Any], rows: list[dict[str, Any]], log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """This run's lever rows plus the rows of an earlier report measured with the same prompts,
    personas, reply settings and judge (levers measured in separate runs accumulate)."""
    if not path.exists():
        return rows
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        log(f"{path}: unreadable; replaced by this run's levers only")
        return rows
    if not isinstance(old, dict) or old.get("settings") != settings_doc:
        log(f"{path}: measured with other settings; replaced by this run's levers only")
        return rows
    fresh = {r["id"] for r in rows}
    kept = [r for r in old.get("levers", []) if r.get("id") not in fresh]
    if kept:
        log(f"kept {len(kept)} levers measured earlier with the same settings")
    return kept + rows


def merged_examples(path: Path, settings_doc: dict[str, Any], examples: list[dict[str, str]]) -> list[dict[str, str]]:
    """This run's example replies plus an earlier report's (same settings) for the levers this run did not
    re-measure, so the report keeps an example for every lever it keeps."""
    try:
        old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        old = None
    if not isinstance(old, dict) or old.get("settings") != settings_doc:
        return examples
    fresh = {e["lever"] for e in examples}
    kept = [e for e in old.get("examples", []) if isinstance(e, dict) and e.get("lever") not in fresh]
    return examples + kept


def finite_json(obj: Any) -> Any:
    """JSON has no NaN: undefined figures are written as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    return obj


def _quality_means(qs: Sequence[ReplyQuality]) -> dict[str, float]:
    finite = [q.perplexity for q in qs if math.isfinite(q.perplexity)]
    return {
        "repetition": float(np.mean([q.repetition for q in qs])),
        "distinct2": float(np.mean([q.distinct2 for q in qs])),
        "perplexity_median": float(np.median(finite)) if finite else float("inf"),
        "relevance": float(np.mean([q.relevance for q in qs])),
        "words": float(np.mean([q.words for q in qs])),
    }


def _flag_counts(calibration: QualityCalibration, qs: Sequence[ReplyQuality]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for q in qs:
        for flag in calibration.flags(q):
            counts[flag] = counts.get(flag, 0) + 1
    return counts


def _examples(
    replies: dict[tuple[str, str, str], Reply],
    rows: Sequence[dict[str, Any]],
    personas: Sequence[Persona],
    prompts: Sequence[Prompt],
    per_lever: int = 1,
) -> list[dict[str, str]]:
    """The first prompt's replies for every lever beside the unsteered one (for reading, not scoring)."""
    out = []
    persona = personas[0].id
    for q in prompts[:per_lever]:
        out.append({"lever": "none", "prompt": q.text, "reply": replies[("none", persona, q.id)].text})
        for r in rows:
            out.append({"lever": r["id"], "prompt": q.text, "reply": replies[(r["id"], persona, q.id)].text})
    return out


def _f(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:+.{digits}f}"


def render_behaviour(doc: dict[str, Any]) -> str:
    dims = doc["dimensions"]
    judge = doc["judge"]
    weak = set(judge["weak_values"])
    cal = doc["quality_calibration"]
    s = doc["settings"]
    lines = [
        f"# Behaviour report: {doc['model']['name']}",
        "",
        "Values as the chatbot says them: replies to everyday user messages, judged for every value, next to",
        "what the survey (first-person statement likelihood) measured for the same levers.",
        "",
        f"Replies: {len(s['prompts'])} dev prompts x {len(s['personas'])} personas per condition, "
        f"{s['replies']['max_new_tokens']} new tokens, temperature {s['replies']['temperature']} "
        f"(seed {s['replies']['seed']}). Judge: probe on layer {s['judge_layer']} of the judge model.",
        "",
        "## The judge (labelled test half, never used for fitting or choosing)",
        "",
        "Score units: +1 = the centroid of labelled high-pole replies, -1 = the low-pole centroid.",
        "",
        "| value | AUROC high vs low (95% CI) | specificity AUROC | n high/low | |",
        "|---|---|---|---|---|",
    ]
    for d in dims:
        v = judge["per_value"][d]
        lines.append(
            f"| {d} | {v['auroc']:.3f} ({v['auroc_ci'][0]:.2f}, {v['auroc_ci'][1]:.2f}) | "
            f"{v['specificity_auroc']:.3f} | {v['n_high']}/{v['n_low']} | {'weak' if d in weak else ''} |"
        )
    lines += [
        "",
        f"Min AUROC {judge['min_auroc']:.3f}, mean {judge['mean_auroc']:.3f}. Specificity AUROC: the "
        "value's high-pole replies against every text not labelled with this value (other values' replies "
        "and neutral ones).",
        "",
        "Confusion (mean judge score per labelled class):",
        "",
        "| class | " + " | ".join(dims) + " |",
        "|---|" + "---|" * len(dims),
    ]
    for cls, row in judge["confusion"].items():
        lines.append(f"| {cls} | " + " | ".join(f"{row[d]:+.2f}" for d in dims) + " |")
    lines += [
        "",
        "## Reply quality",
        "",
        f"Calibrated on {cal['n']} unsteered replies: a reply is degraded when it is empty (< 3 words), a refusal, "
        f"or outside the unsteered 95% range: repeated 4-grams > {cal['max_repetition']:.3f}, distinct bigrams < "
        f"{cal['min_distinct2']:.3f}, perplexity > {cal['max_perplexity']:.1f}, relevance (PMI with the message) "
        f"< {cal['min_relevance']:+.3f} nats/token. {cal['degraded_rate']:.0%} of the unsteered replies "
        "themselves fall outside (the price of a 95% range on several metrics).",
        "",
        "A lever degrades replies when its replies are degraded more often than unsteered ones (one-sided "
        "Fisher exact, p < 0.05).",
        "",
        "## Every lever: behavioural effect on its target, quality, survey effect",
        "",
        "| lever | target | judge effect on target (95% CI) | moves as intended | survey effect | degraded "
        "(unsteered) | p | flags |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["levers"]:
        t = r["target"]
        e = r["effects"][t] if t else None
        q = r["quality"]
        mark = " (weak judge)" if t in weak else ""
        lines.append(
            f"| {r['id']} | {t or '?'}{mark} | {_f(e['mean']) if e else 'n/a'} "
            f"({_f(e['ci_low']) if e else ''}, {_f(e['ci_high']) if e else ''}) | "
            f"{'yes' if r['moves_target_as_intended'] else 'no'} | "
            f"{_f(r['survey_effects'][t]) if t and r.get('survey_effects') else 'n/a'} | "
            f"{q['degraded']}/{q['n']} ({q['baseline_degraded']}/{q['baseline_n']}) | {q['p_value']:.3f}"
            f"{' **degrades**' if q['is_degraded'] else ''} | "
            + ", ".join(f"{k} {v}" for k, v in sorted(r["flags"].items()))
            + " |"
        )
    lines += [
        "",
        "## Behavioural vs survey effects",
        "",
        "| levers | n | on-target sign agreement | sign agreement where the judge effect is beyond noise "
        "(pairs) | Pearson r over lever x value |",
        "|---|---|---|---|---|",
    ]
    for kind, a in doc["agreement"].items():
        on = a["on_target_sign_agreement"]
        beyond = a["sign_agreement_beyond_noise"]
        lines.append(
            f"| {kind} | {a['levers']} | {'n/a' if on is None else f'{on:.0%}'} | "
            f"{'n/a' if beyond is None else f'{beyond:.0%}'} ({a['pairs_beyond_noise']}) | "
            f"{_f(a['pearson_r'], 2)} |"
        )
    lines += [
        "",
        "## Every lever: judge effect on every value (mean)",
        "",
        "| lever | " + " | ".join(dims) + " |",
        "|---|" + "---|" * len(dims),
    ]
    for r in doc["levers"]:
        cells = []
        for d in dims:
            e = r["effects"][d]
            star = "*" if e["ci_low"] > 0 or e["ci_high"] < 0 else ""
            cells.append(f"{e['mean']:+.2f}{star}")
        lines.append(f"| {r['id']} | " + " | ".join(cells) + " |")
    lines += ["", "\\* 95% interval excludes 0.", "", "## Read them yourself: one prompt, every lever", ""]
    for ex in doc["examples"]:
        reply = ex["reply"].replace("\n", " ").replace("|", "/")
        lines.append(f"- **{ex['lever']}**: {reply}")
    t = doc["timing"]
    lines += [
        "",
        f"Timing: {t['replies']} replies; generation {t['generation_seconds']:.0f} s, judge "
        f"{t['judge_seconds']:.0f} s, quality {t['quality_seconds']:.0f} s, total {t['total_seconds']:.0f} s "
        "(this run; resumed runs count only the resumed part of generation).",
    ]
    return "\n".join(lines) + "\n"
