"""``causalguard behaviour confirm``: measure the usable levers again, on replies nothing selected them on.

A lever earns ``usable`` by moving its target beyond noise in the behaviour report: one test among
many levers, so the levers that pass are partly the lucky draws, and their measured effects run
high (validation on held-out prompts measured about half the forecast). Confirmation is the second
stage of a screen-then-confirm design:

1. generate replies for the chosen levers (default: every ``usable`` one) and for the unsteered
   model on a slice of the **dev** prompts the report did not use (``prompt_offset``) and fresh
   personas (a seed no other run uses), through the guard's own generation path, checkpointed;
2. judge them with the bundle's judge and flag quality with the bundle's calibration;
3. replace each lever's reply effects in the catalog with the confirmation's (unbiased: nothing was
   selected on them) and keep the screening's effect on the target beside them; the verdict stays
   ``usable`` only when the confirmation also moves the target beyond noise the intended way (95%
   t-interval) and its replies are not degraded; otherwise ``no_target_effect`` or
   ``degrades_replies``, with the figures in ``why``;
4. with judges that selected nothing (``other_judges``, see ``second_judge``), a lever also needs the
   second judge to see its target move the intended way on the same reply pairs (95% t-interval), else
   ``no_target_effect`` ("second judge: not seen"), and no check judge may see it move significantly
   the wrong way ("check judge: the wrong way"), so a lever that only the selecting judge sees never
   spends a held-out test split.

The figures go to ``confirmation.json`` in the bundle, where levers confirmed in separate runs accumulate
(each with its run's prompts and personas); ``behaviour report`` re-applies them when it re-attaches
screening effects to the catalog, so a later report never silently undoes a confirmation.
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
from causalguard.bundle.catalog import Catalog, LeverEntry, save_catalog
from causalguard.bundle.format import load_bundle
from causalguard.bundle.integrity import seal_bundle
from causalguard.errors import ConfigError
from causalguard.graphs.behaviour.confirmation_file import (
    CONFIRMATION_FILE,
    confirmed_catalog,
    merged_confirmation,
    screening_of,
)
from causalguard.graphs.behaviour.held_out import held_out_catalog, read_held_out
from causalguard.graphs.behaviour.replies import ReplyCondition, ReplySettings, ReplyStore, run_steered_replies
from causalguard.graphs.behaviour.reply_backends import ReplyBackend
from causalguard.graphs.behaviour.report import (
    bundle_adapters,
    finite_json,
    lever_effects,
    lever_reply_condition,
    reply_personas,
    served_system_prompt,
)
from causalguard.graphs.behaviour.score_cache import cached_reply_quality
from causalguard.graphs.behaviour.second_judge import OtherJudge
from causalguard.judging.judge import load_probe_judge
from causalguard.judging.prompt_sets import load_prompts
from causalguard.judging.reply_quality import compare_degradation, cross_prompt_sameness
from causalguard.models.loaded import LoadedModel


@dataclass(frozen=True)
class ConfirmSettings:
    levers: tuple[str, ...] | None = None  # None: every lever the catalog calls usable
    prompts: int = 40  # dev prompts, balanced over values
    prompt_offset: int = 20  # past the report's 20: prompts nothing was selected on
    personas: int = 2  # the default assistant prompt plus fresh personas
    persona_seed: int = 2001  # apart from the report's 2000 and validation's 3000+
    replies: ReplySettings = field(default_factory=ReplySettings)
    batch_size: int = 16


def confirm_levers(
    lm: LoadedModel,
    bundle_dir: Path,
    work: Path,
    settings: ConfirmSettings,
    *,
    restart: bool = False,
    log: Callable[[str], None] = print,
    backend: ReplyBackend | None = None,
    other_judges: Sequence[OtherJudge] = (),
) -> dict[str, Any]:
    """Generate, judge and apply the confirmation (module docstring); returns ``confirmation.json``'s run."""
    bundle = load_bundle(bundle_dir, expected_fingerprint=lm.fingerprint)
    catalog, behaviour = bundle.catalog, bundle.behaviour
    if catalog is None or not catalog.has_replies or behaviour is None:
        raise ConfigError.single(
            str(bundle_dir),
            "confirmation needs a catalog measured on replies",
            hint="run 'causalguard behaviour report --bundle FOLDER' first",
        )
    chosen = _chosen(catalog, settings.levers, bundle_dir)
    dims = list(catalog.dimensions)
    prompts = list(load_prompts(dimensions=dims).split("dev").balanced_slice(settings.prompt_offset, settings.prompts))
    personas = reply_personas(settings.personas, settings.persona_seed)
    sae = load_sae(bundle.sae_dir, lm) if bundle.sae_dir is not None else None
    vectors = (
        load_vectors(
            bundle.vectors_dir, hidden_size=lm.hidden_size, num_layers=lm.num_layers, fingerprint=lm.fingerprint
        )
        if bundle.vectors_dir is not None
        else None
    )
    adapters = bundle_adapters(bundle, lm)
    conditions = [ReplyCondition("none")] + [lever_reply_condition(e, sae, catalog, vectors, adapters) for e in chosen]
    identity = {
        "model": lm.fingerprint,
        "settings": asdict(settings.replies),
        "prompts": [p.id for p in prompts],
        "personas": [asdict(p) for p in personas],
        "batch_size": settings.batch_size,
        "split": "dev",
        "levers": [e.id for e in chosen],
    }
    store = ReplyStore(work, identity, restart=restart)
    log(
        f"confirming {len(chosen)} levers: {len(conditions)} conditions x {len(personas)} personas x "
        f"{len(prompts)} dev prompts (offset {settings.prompt_offset})"
    )
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
    log("judging and measuring reply quality ...")
    judge = load_probe_judge(bundle_dir, lm)
    judged = judge.score([replies[k].text for k in keys])
    scores = {k: np.asarray(judged[i], dtype=float) for i, k in enumerate(keys)}
    system_of, instructions, text_of = (
        {p.id: p.system_prompt for p in personas},
        {c.id: c.instructions for c in conditions},
        {q.id: q.text for q in prompts},
    )
    texts = [replies[k].text for k in keys]
    systems = [served_system_prompt(system_of[k[1]], instructions[k[0]]) for k in keys]
    quality = cached_reply_quality(lm, work, keys, [text_of[k[2]] for k in keys], texts, systems)
    sameness = cross_prompt_sameness(
        [replies[k].text for k in keys], [f"{k[0]}|{k[1]}" for k in keys], [k[2] for k in keys]
    )
    quality = [dataclasses.replace(q, sameness=x) for q, x in zip(quality, sameness, strict=True)]
    flags = {k: behaviour.calibration.degraded(quality[i]) for i, k in enumerate(keys)}
    base_flags = [flags[("none", p.id, q.id)] for p in personas for q in prompts]
    rows: dict[str, dict[str, Any]] = {}
    for lever in chosen:
        effects = lever_effects(scores, lever.id, personas, prompts, dims)
        degradation = compare_degradation(
            [flags[(lever.id, p.id, q.id)] for p in personas for q in prompts], base_flags
        )
        rows[lever.id] = {"effects": effects, "quality": degradation.as_dict()}
    for other in other_judges:
        log(f"{other.role} judge ({other.model}, {other.kind}) on each lever's target ...")
        for lever in chosen:
            by_other: dict[str, Any] = {
                "model": other.model,
                "kind": other.kind,
                "target": _other_judge_target(other, lever, keys, texts, personas, prompts, work, log),
            }
            if other.role == "second":
                rows[lever.id]["second_judge"] = by_other
            else:
                rows[lever.id].setdefault("check_judges", []).append(by_other)
    updated = confirmed_catalog(catalog, rows)
    save_catalog(held_out_catalog(updated, read_held_out(bundle_dir)), bundle_dir)  # a failed held-out test stays
    run = {
        "prompt_split": "dev",
        "prompts": [q.id for q in prompts],
        "prompt_offset": settings.prompt_offset,
        "personas": [asdict(p) for p in personas],
        "replies": asdict(settings.replies),
    }
    levers = {
        e.id: {
            **rows[e.id],
            "screening": screening_of(e).model_dump(),
            "verdict": updated.lever(e.id).replies.verdict,  # type: ignore[union-attr]
            "why": updated.lever(e.id).replies.why,  # type: ignore[union-attr]
            "run": run,
        }
        for e in chosen
    }
    doc = {"model": lm.name, **run, "levers": levers}
    merged = merged_confirmation(bundle_dir, doc)  # levers confirmed in earlier runs stay
    (bundle_dir / CONFIRMATION_FILE).write_text(json.dumps(finite_json(merged), indent=2) + "\n")
    seal_bundle(bundle_dir)
    return doc


def _other_judge_target(
    judge: OtherJudge,
    lever: LeverEntry,
    keys: Sequence[tuple[str, str, str]],
    texts: Sequence[str],
    personas: Sequence[Any],
    prompts: Sequence[Any],
    work: Path,
    log: Callable[[str], None],
) -> dict[str, float]:
    """A judge's change on ``lever``'s target: steered minus unsteered reply per pair (95% t).
    Scores are kept in ``work`` per judge kind and target (the unsteered replies are judged once)."""
    from causalguard.graphs.behaviour.report import t_interval

    if lever.target is None:
        raise ConfigError.single("--levers", "a lever without a target cannot be judged on it", field=lever.id)
    pairs = [(p.id, q.id) for p in personas for q in prompts]
    chosen = [(c, p, q) for c in (lever.id, "none") for p, q in pairs]
    row = {k: i for i, k in enumerate(keys)}
    scored = judge.target_scores(lever.target, work, chosen, texts, row, log)
    steered, plain = np.asarray(scored[: len(pairs)]), np.asarray(scored[len(pairs) :])
    return t_interval(steered - plain)


def _chosen(catalog: Catalog, ids: Sequence[str] | None, bundle_dir: Path) -> list[LeverEntry]:
    if ids is None:
        chosen = [e for e in catalog.levers if e.replies is not None and e.replies.verdict == "usable"]
    else:
        known = {e.id for e in catalog.levers}
        unknown = sorted(set(ids) - known)
        if unknown:
            raise ConfigError.single(
                str(bundle_dir / "catalog.json"),
                f"unknown lever ids: {', '.join(unknown)}",
                field="--levers",
                hint="see 'causalguard levers show BUNDLE' for the ids",
            )
        chosen = [e for e in catalog.levers if e.id in ids and e.replies is not None]
    if not chosen:
        raise ConfigError.single(
            str(bundle_dir / "catalog.json"),
            "no lever to confirm (none is usable, or the chosen ones were never measured on replies)",
            field="--levers",
            hint="run 'causalguard behaviour report' first, or name levers with --levers",
        )
    return chosen
