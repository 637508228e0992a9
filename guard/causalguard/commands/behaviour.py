"""``causalguard behaviour``: values as the chatbot says them (reply-level judge, reply quality, effects)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from causalguard.commands.options import (
    MAX_SEED,
    BackendOpt,
    CheckJudgeOpt,
    RayOpt,
    SecondJudgeOpt,
    reply_backend,
)

if TYPE_CHECKING:
    from causalguard.graphs.behaviour.second_judge import OtherJudge

behaviour_app = typer.Typer(
    help="Judge what the chatbot says: reply-level value judge, reply quality, lever effects on replies.",
    no_args_is_help=True,
)


@behaviour_app.command("report")
def behaviour_report_command(
    bundle: Annotated[
        Path,
        typer.Option(
            help="Bundle folder with catalog.json; judge.json, judge.safetensors, "
            "behaviour.json and BEHAVIOUR.md are written into it."
        ),
    ],
    model: Annotated[str, typer.Option("--model", "-m", help="Registry name, folder, .gguf or HF id.")] = (
        "smollm2-135m-instruct"
    ),
    work: Annotated[
        Path | None, typer.Option(help="Reply run folder (resumable); default BUNDLE/../.behaviour-work-<bundle name>.")
    ] = None,
    prompts: Annotated[int, typer.Option(min=10, help="Dev prompts per condition (balanced over values).")] = 20,
    personas: Annotated[int, typer.Option(min=1, help="Personas (the default assistant prompt first).")] = 2,
    levers: Annotated[
        str | None,
        typer.Option(help="Comma-separated catalog lever ids; default all; 'none' for none (only the variants below)."),
    ] = None,
    sweep: Annotated[
        str | None,
        typer.Option(
            help="Also every catalog SAE feature with a target at these "
            "strengths, e.g. '0.1,-0.1' (residual-norm units)."
        ),
    ] = None,
    reply_wordings: Annotated[bool, typer.Option(help="Also the built-in reply-style role wordings.")] = False,
    wordings: Annotated[
        Path | None,
        typer.Option(
            help="Also the operator's role wordings (YAML: wordings: [{value, direction: up|down, text, name}])."
        ),
    ] = None,
    guided: Annotated[
        str | None,
        typer.Option(
            help="Also guided levers: every reply-style wording amplified by "
            "classifier-free guidance at these scales, e.g. '1.5,2'."
        ),
    ] = None,
    guided_against: Annotated[
        str,
        typer.Option(
            help="What guidance pushes away from: 'opposite' (the other pole's wording), 'plain' (no role) or 'both'."
        ),
    ] = "opposite",
    vectors: Annotated[
        str | None,
        typer.Option(
            help="Also vector levers: every steering vector in BUNDLE/vectors "
            "at these signed strengths (median residual norms), e.g. "
            "'0.5,-0.5,1,-1'."
        ),
    ] = None,
    vector_scope: Annotated[
        str,
        typer.Option(
            help="Where --vectors adds each vector: 'generated' (the reply's tokens), 'all' (the prompt's "
            "too, as llama.cpp's control vectors do) or 'both' (each strength twice)."
        ),
    ] = "generated",
    vector_source: Annotated[
        str,
        typer.Option(
            help="Which extraction --vectors measures: 'replies' (the model's own replies under inclined and "
            "disinclined wordings, 'levers vectors') or another source in BUNDLE/vectors, e.g. 'labelled' "
            "(the labelled replies' dev half, 'levers vectors --source labelled'; lever ids end in ':labelled')."
        ),
    ] = "replies",
    adapters: Annotated[
        str | None,
        typer.Option(help="Also adapter levers: every value adapter in BUNDLE/adapters at these scales, e.g. '1,0.5'."),
    ] = None,
    pairs: Annotated[
        str | None,
        typer.Option(
            help="Also pair levers: every reply-style wording together with its value's steering vector at these "
            "strength magnitudes (signed by the pole; layers, --vector-scope and --vector-source as for --vectors), "
            "measured as one lever, e.g. '0.1'."
        ),
    ] = None,
    pair_guidance: Annotated[
        str,
        typer.Option(
            help="Guidance scales of --pairs' wordings: 1 puts the wording in the system message as a role lever "
            "does, g > 1 amplifies it against the opposite pole's wording, e.g. '1,1.5'."
        ),
    ] = "1",
    directions: Annotated[
        str | None,
        typer.Option(
            help="Only the variants (--guided, --vectors, --pairs, --sweep, --adapters, wordings) built for these "
            "values and directions, e.g. 'power+,hedonism-'; catalog levers are chosen with --levers."
        ),
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(min=8, max=512, help="Tokens per reply.")] = 64,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0, help="0 = greedy.")] = 0.0,
    seed: Annotated[int, typer.Option(max=MAX_SEED, min=0, help="Sampling seed (per-row generators).")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, max=256)] = 16,
    restart: Annotated[bool, typer.Option(help="Discard a previous reply run in the work folder.")] = False,
    continuous: Annotated[
        bool,
        typer.Option(
            help="Generate through the serving decode loop and its prefix cache "
            "(faster with long persona prompts; greedy replies equal the "
            "default path's up to float rounding)."
        ),
    ] = False,
    backend: BackendOpt = "local",
    ray: RayOpt = None,
) -> None:
    """Fit and validate the judge, generate replies for every lever, and write the behaviour report."""
    from causalguard.artifacts import BEHAVIOUR_REPORT
    from causalguard.bundle.catalog import load_catalog
    from causalguard.graphs.behaviour.replies import ReplySettings
    from causalguard.graphs.behaviour.reply_backends import BatcherReplies
    from causalguard.graphs.behaviour.report import ReportSettings, build_behaviour_report
    from causalguard.graphs.levers.adapters import adapter_targets
    from causalguard.graphs.levers.variants import parse_directions, variant_levers
    from causalguard.models import load_model

    if levers is not None and levers.strip() == "none":
        lever_ids: tuple[str, ...] | None = ()
    else:
        lever_ids = tuple(x.strip() for x in levers.split(",") if x.strip()) if levers else None
    catalog = load_catalog(bundle)
    if catalog is None:
        raise typer.BadParameter(
            f"{bundle} has no catalog.json; run 'causalguard levers measure --bundle {bundle}'", param_hint="--bundle"
        )
    vector_layers = _vector_layers(bundle, vector_source) if vectors or pairs else None
    try:
        wanted = parse_directions(directions, catalog.dimensions) if directions is not None else None
        extra, _ = variant_levers(
            catalog,
            sweep,
            reply_wordings,
            wordings,
            guided=guided,
            guided_against=guided_against,
            vectors=vectors,
            vector_layers=vector_layers,
            vector_scope=vector_scope,
            adapters=adapters,
            adapter_targets=adapter_targets(bundle) if adapters else None,
            pairs=pairs,
            pair_guidance=pair_guidance,
            directions=wanted,
        )
    except ValueError as exc:
        hints = ("--guided", "--vector-scope", "--vectors", "--adapters", "--pairs", "--pair-guidance", "--directions")
        hint = next((h for h in hints if str(exc).startswith(h + ":")), "--sweep")
        raise typer.BadParameter(str(exc), param_hint=hint) from None
    if continuous and backend != "local":
        raise typer.BadParameter(
            "--continuous runs in this process: leave --backend at local", param_hint="--continuous"
        )
    # variants 'levers extend' already added to the catalog are measured as catalog levers, also with --levers none
    in_catalog = {e.id for e in catalog.levers}
    if lever_ids is not None:
        lever_ids = tuple(dict.fromkeys(lever_ids + tuple(v.id for v in extra if v.id in in_catalog)))
    extra = [lever for lever in extra if lever.id not in in_catalog]
    settings = ReportSettings(
        prompts=prompts,
        personas=personas,
        levers=lever_ids,
        batch_size=batch_size,
        extra=tuple(extra),
        replies=ReplySettings(max_new_tokens, temperature, seed),
    )
    lm = load_model(model)
    build_behaviour_report(
        lm,
        bundle,
        work or bundle.parent / f".behaviour-work-{bundle.name}",
        settings,
        restart=restart,
        log=typer.echo,
        backend=BatcherReplies() if continuous else reply_backend(backend, ray),
    )
    typer.echo(f"wrote {bundle / 'behaviour.json'} and {bundle / BEHAVIOUR_REPORT}")


def _vector_layers(bundle: Path, source: str = "replies") -> dict[str, int]:
    """Key -> layer of the bundle's steering vectors from ``source`` (read from the card; shapes are checked
    at use): ``replies`` keys are value names, another source's are ``<value>.<source>``."""
    from causalguard.adapters.hf.vectors import VECTORS_CARD
    from causalguard.errors import ConfigError

    card = bundle / "vectors" / VECTORS_CARD
    if not card.is_file():
        raise typer.BadParameter(
            f"{card} is missing; run 'causalguard levers vectors --bundle {bundle}'", param_hint="--vectors"
        )
    try:
        listed = json.loads(card.read_text(encoding="utf-8"))["vectors"]
        layers = {str(key): int(info["layer"]) for key, info in listed.items()}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError):
        raise ConfigError.single(
            str(card), "not a steering-vector card", field="vectors", hint="re-run 'causalguard levers vectors'"
        ) from None
    chosen = {k: v for k, v in layers.items() if (k.partition(".")[2] or "replies") == source}
    if not chosen:
        sources = sorted({k.partition(".")[2] or "replies" for k in layers})
        raise typer.BadParameter(
            f"{card} holds no vectors from '{source}' (it has: {', '.join(sources)})", param_hint="--vector-source"
        )
    return chosen


@behaviour_app.command("judge")
def behaviour_judge_command(
    judge_model: Annotated[
        str, typer.Option("--judge-model", "-m", help="The judge: registry name, folder, .gguf or HF id.")
    ] = "smollm2-135m-instruct",
    kind: Annotated[
        str,
        typer.Option(
            help="probe (hidden-state probe, one pass per text) or contrast (likelihood contrasts over framings)."
        ),
    ] = "probe",
    inventory: Annotated[str, typer.Option(help="Inventory naming the values (and their definitions).")] = (
        "schwartz-basic-10"
    ),
    labelled: Annotated[Path | None, typer.Option(help="Labelled replies JSONL; default the shipped set.")] = None,
    out: Annotated[Path | None, typer.Option(help="probe: save judge.json + judge.safetensors here.")] = None,
) -> None:
    """Validate a value judge on the labelled set's test half: per-value AUROC and the confusion table."""
    from causalguard.graphs.behaviour.judge_fit import fit_probe_judge, validate_any_judge
    from causalguard.judging.judge import ContrastJudge, ValueDefinition
    from causalguard.judging.labelled import load_labelled
    from causalguard.models import load_model
    from causalguard.values import load_inventory

    if kind not in ("probe", "contrast"):
        raise typer.BadParameter(f"unknown judge kind {kind!r}; use probe or contrast", param_hint="--kind")
    inv = load_inventory(inventory)
    dims = [d.name for d in inv.dimensions]
    texts = load_labelled(labelled, dimensions=dims)
    lm = load_model(judge_model)
    if kind == "probe":
        fitted = fit_probe_judge(lm, texts, dims)
        validation = fitted.validation
        typer.echo(f"probe layer {fitted.judge.weights.layer} (chosen by 5-fold CV on the dev half)")
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            fitted.judge.save(
                out, {"validation": {k: validation[k] for k in ("min_auroc", "mean_auroc", "weak_values")}}
            )
            from causalguard.bundle.integrity import seal_bundle

            seal_bundle(out)  # when OUT is a bundle, its record now covers the new judge
    else:
        values = [ValueDefinition(d.name, d.display, d.definition, d.opposite_text) for d in inv.dimensions]
        validation = validate_any_judge(ContrastJudge(lm, values), texts, dims)
    typer.echo(f"{kind} judge on {lm.name}, labelled test half ({validation['n_texts']} texts):")
    for d in dims:
        v = validation["per_value"][d]
        typer.echo(
            f"  {d:15s} AUROC {v['auroc']:.3f} ({v['auroc_ci'][0]:.2f}-{v['auroc_ci'][1]:.2f})  "
            f"specificity {v['specificity_auroc']:.3f}{'  weak' if v['weak'] else ''}"
        )
    typer.echo(f"  min {validation['min_auroc']:.3f}, mean {validation['mean_auroc']:.3f}")


@behaviour_app.command("confirm")
def behaviour_confirm_command(
    bundle: Annotated[Path, typer.Option(help="Bundle folder with a catalog measured on replies.")],
    levers: Annotated[str | None, typer.Option(help="Comma-separated lever ids; default: every usable lever.")] = None,
    work: Annotated[Path, typer.Option(help="Reply run folder (resumable).")] = Path("runs/confirm"),
    prompts: Annotated[int, typer.Option(min=10, help="Dev prompts (balanced over values).")] = 40,
    prompt_offset: Annotated[
        int, typer.Option(min=0, help="Skip the first N dev prompts of the balanced order (the report used 20).")
    ] = 20,
    personas: Annotated[int, typer.Option(min=1, help="The assistant prompt plus fresh personas.")] = 2,
    persona_seed: Annotated[
        int, typer.Option(max=MAX_SEED, min=0, help="Seed of the fresh personas (the report used 2000).")
    ] = 2001,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model; default: the bundle's.")] = None,
    restart: Annotated[bool, typer.Option(help="Discard a previous run in the work folder.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=256)] = 16,
    continuous: Annotated[
        bool, typer.Option(help="Generate through the serving decode loop and its prefix cache.")
    ] = False,
    second_judge: SecondJudgeOpt = None,
    check_judge: CheckJudgeOpt = None,
    backend: BackendOpt = "local",
    ray: RayOpt = None,
) -> None:
    """Measure levers again on replies nothing selected them on (fresh dev prompts and personas); their
    effects in the catalog become the confirmation's, and a lever stays usable only if it replicates."""
    from causalguard.bundle.format import load_bundle
    from causalguard.graphs.behaviour.confirm import ConfirmSettings, confirm_levers
    from causalguard.models import load_model

    others = _other_judges(second_judge, check_judge)  # a wrong judge spec fails before any model loads
    lm = load_model(model or load_bundle(bundle).model_name)
    settings = ConfirmSettings(
        levers=tuple(x.strip() for x in levers.split(",")) if levers else None,
        prompts=prompts,
        prompt_offset=prompt_offset,
        personas=personas,
        persona_seed=persona_seed,
        batch_size=batch_size,
    )
    if continuous and backend != "local":
        raise typer.BadParameter(
            "--continuous runs in this process: leave --backend at local", param_hint="--continuous"
        )
    from causalguard.graphs.behaviour.reply_backends import BatcherReplies

    doc = confirm_levers(
        lm,
        bundle,
        work,
        settings,
        restart=restart,
        log=typer.echo,
        backend=BatcherReplies() if continuous else reply_backend(backend, ray),
        other_judges=others,
    )
    for lever_id, row in doc["levers"].items():
        typer.echo(f"  {lever_id}: {row['verdict']}: {row['why']}")
    typer.echo(f"wrote {bundle / 'confirmation.json'} and updated {bundle / 'catalog.json'}")


@behaviour_app.command("held-out")
def behaviour_held_out_command(
    bundle: Annotated[Path, typer.Option(help="Bundle folder whose catalog the test updates.")],
    looks: Annotated[
        list[Path],
        typer.Argument(
            help="Validation files ('behaviour validate'), in the order they "
            "were run; each is one look at held-out data (1 to 5)."
        ),
    ],
    series: Annotated[
        list[str] | None,
        typer.Option(
            "--series",
            help="A later series of looks on a fresh test split, comma-separated validation files (1 to "
            "5, its own Pocock design); repeat for each split, in the order they were written.",
        ),
    ] = None,
) -> None:
    """Pool the held-out validations per lever (Pocock-adjusted for the looks of each test split) and take away
    the levers that did not hold: they become 'failed_held_out' and are never planned. Never makes a lever
    usable."""
    import json

    from causalguard.bundle.catalog import save_catalog
    from causalguard.bundle.format import load_bundle
    from causalguard.graphs.behaviour.held_out import HELD_OUT_FILE, held_out_catalog, held_out_series_record
    from causalguard.graphs.behaviour.report import finite_json

    if not 1 <= len(looks) <= 5:
        raise typer.BadParameter(f"expected 1 to 5 validation files, got {len(looks)}", param_hint="LOOKS")
    later = [[Path(x.strip()) for x in group.split(",") if x.strip()] for group in series or []]
    for group in later:
        if not 1 <= len(group) <= 5:
            raise typer.BadParameter(
                f"expected 1 to 5 comma-separated validation files, got {len(group)}", param_hint="--series"
            )
    catalog = load_bundle(bundle).catalog
    if catalog is None or not catalog.has_replies:
        raise typer.BadParameter(
            f"{bundle} has no catalog measured on replies; run 'causalguard behaviour report --bundle {bundle}' first",
            param_hint="--bundle",
        )
    record = held_out_series_record(catalog, [looks, *later])
    (bundle / HELD_OUT_FILE).write_text(json.dumps(finite_json(record), indent=2) + "\n")
    save_catalog(held_out_catalog(catalog, record), bundle)
    for k, part in enumerate(record["series"]):
        typer.echo(f"series {k + 1}: {len(part['looks'])} look(s), Pocock design: {part['level']:.2%} intervals")
    for lever_id, row in record["levers"].items():
        typer.echo(f"  {lever_id}: {row['why']}")
    typer.echo(f"wrote {bundle / HELD_OUT_FILE} and updated {bundle / 'catalog.json'}")


@behaviour_app.command("show")
def behaviour_show_command(bundle: Annotated[Path, typer.Argument(help="Bundle folder.")]) -> None:
    """Print a bundle's behaviour report (rendered from behaviour.json)."""
    import json

    from causalguard.artifacts import BEHAVIOUR_FILE
    from causalguard.graphs.behaviour.report import render_behaviour

    path = bundle / BEHAVIOUR_FILE
    if not path.exists():
        raise typer.BadParameter(
            f"{bundle} has no {BEHAVIOUR_FILE}; run 'causalguard behaviour report --bundle {bundle}'"
        )
    typer.echo(render_behaviour(json.loads(path.read_text(encoding="utf-8"))))


@behaviour_app.command("validate")
def behaviour_validate_command(
    config: Annotated[Path, typer.Option(help="The operator config (guard.yaml) whose profiles are validated.")],
    every_value: Annotated[
        bool, typer.Option(help="Also one profile per value and direction (<value>-up, <value>-down).")
    ] = False,
    work: Annotated[Path, typer.Option(help="Reply run folder (resumable); validation.json is written into it.")] = (
        Path("runs/validate")
    ),
    prompts: Annotated[int, typer.Option(min=10, help="Test prompts per profile (balanced over values).")] = 20,
    prompt_offset: Annotated[
        int,
        typer.Option(
            min=0,
            help="Skip the first N test prompts of the balanced order (a slice an earlier validation did not read).",
        ),
    ] = 0,
    personas: Annotated[int, typer.Option(min=1, help="The config's system prompt plus fresh personas.")] = 2,
    persona_seed: Annotated[
        int,
        typer.Option(max=MAX_SEED, min=3000, help="Seed of the fresh personas (3000 and up: seeds no other run uses)."),
    ] = 3000,
    max_new_tokens: Annotated[int, typer.Option(min=8, max=512, help="Tokens per reply.")] = 64,
    restart: Annotated[bool, typer.Option(help="Discard a previous run in the work folder.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=256)] = 16,
    second_judge: SecondJudgeOpt = None,
    check_judge: CheckJudgeOpt = None,
    continuous: Annotated[
        bool, typer.Option(help="Generate through the serving decode loop and its prefix cache.")
    ] = False,
    backend: BackendOpt = "local",
    ray: RayOpt = None,
    engine_plain: Annotated[
        str | None,
        typer.Option(
            help="Generate on llama.cpp's server at this URL instead (unguarded rows), e.g. http://127.0.0.1:8080; "
            "for comparing a lever with its export ('levers export')."
        ),
    ] = None,
    engine_steered: Annotated[
        str | None,
        typer.Option(help="With --engine-plain: the server started with the exported lever (guarded rows)."),
    ] = None,
) -> None:
    """Do the config's plans hold in the replies? Held-out test prompts, fresh personas, guarded vs unguarded."""
    from causalguard.bundle.format import load_bundle, resolve_bundle_dir
    from causalguard.config.loading import read_guard_config
    from causalguard.graphs.behaviour.replies import ReplySettings
    from causalguard.graphs.behaviour.validate import (
        ValidateSettings,
        every_value_profiles,
        render_validation,
        validate_profiles,
    )
    from causalguard.models import load_model

    if engine_steered is not None and engine_plain is None:
        raise typer.BadParameter("give the unguarded engine too (--engine-plain)", param_hint="--engine-steered")
    if engine_plain is not None and (continuous or backend != "local"):
        raise typer.BadParameter("the engine generates: drop --continuous and --backend", param_hint="--engine-plain")
    from causalguard.graphs.behaviour.reply_backends import BatcherReplies, EngineReplies

    engines = EngineReplies(engine_plain, engine_steered) if engine_plain is not None else None
    refused = engines.unreachable() if engines is not None else None
    if refused is not None:  # before any model loads
        raise typer.BadParameter(refused[1], param_hint=refused[0])

    sourced = read_guard_config(config)
    guard = sourced.config
    others = _other_judges(second_judge, check_judge)  # a wrong judge spec fails before the replies
    lm = load_model(guard.model)
    bundle = load_bundle(
        resolve_bundle_dir(guard.bundle, guard.model, config.parent), expected_fingerprint=lm.fingerprint
    )
    if bundle.catalog is None:
        raise typer.BadParameter("the config's bundle has no catalog", param_hint="--config")
    profiles = {name: guard.profile(name) for name in guard.profile_names}
    if every_value:
        profiles.update(every_value_profiles(bundle.catalog.dimensions))
    settings = ValidateSettings(
        prompts=prompts,
        prompt_offset=prompt_offset,
        personas=personas,
        persona_seed=persona_seed,
        replies=ReplySettings(max_new_tokens=max_new_tokens),
        batch_size=batch_size,
    )
    if continuous and backend != "local":
        raise typer.BadParameter(
            "--continuous runs in this process: leave --backend at local", param_hint="--continuous"
        )

    doc = validate_profiles(
        lm,
        bundle,
        guard,
        profiles,
        work,
        settings,
        restart=restart,
        log=typer.echo,
        backend=engines if engines is not None else BatcherReplies() if continuous else reply_backend(backend, ray),
        other_judges=others,
    )
    typer.echo(render_validation(doc))
    typer.echo(f"wrote {work / 'validation.json'}")


@behaviour_app.command("reply-matrix")
def behaviour_reply_matrix_command(
    bundle: Annotated[Path, typer.Option(help="Bundle folder with catalog.json and the reply judge.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Registry name, folder, .gguf or HF id.")] = (
        "smollm2-135m-instruct"
    ),
    out: Annotated[
        Path | None, typer.Option(help="The matrix CSV; default BUNDLE/data/reply_interventions.csv.")
    ] = None,
    work: Annotated[
        Path | None,
        typer.Option(help="Reply run folder (resumable); default BUNDLE/../.reply-matrix-work-<bundle name>."),
    ] = None,
    levers: Annotated[
        str, typer.Option(help="Catalog lever ids to steer with: a regular expression that must match the whole id.")
    ] = r"(role|guided|vector):.*",
    prompts: Annotated[
        int,
        typer.Option(min=2, help="Dev prompts per persona and condition (balanced over values); a row is their mean."),
    ] = 6,
    prompt_offset: Annotated[
        int,
        typer.Option(
            min=0,
            help="Skip the first N dev prompts of the balanced order (default: past those the behaviour report "
            "and the confirmation read).",
        ),
    ] = 60,
    personas: Annotated[
        int,
        typer.Option(min=3, help="Personas per condition (the default assistant prompt first): the rows per lever."),
    ] = 8,
    persona_seed: Annotated[
        int,
        typer.Option(
            max=MAX_SEED, min=4000, help="Seed of the generated personas (4000 and up: seeds no other run uses)."
        ),
    ] = 4000,
    max_new_tokens: Annotated[int, typer.Option(min=8, max=512, help="Tokens per reply.")] = 64,
    batch_size: Annotated[int, typer.Option(min=1, max=256)] = 16,
    restart: Annotated[bool, typer.Option(help="Discard a previous run in the work folder.")] = False,
    continuous: Annotated[
        bool, typer.Option(help="Generate through the serving decode loop and its prefix cache.")
    ] = False,
) -> None:
    """An interventional matrix of replies: persona x lever rows of mean reply-judge scores, for
    'graph build MATRIX --replies' and 'graph evaluate BUNDLE --test MATRIX --replies'."""
    from causalguard.graphs.behaviour.replies import ReplySettings
    from causalguard.graphs.behaviour.reply_backends import BatcherReplies
    from causalguard.graphs.behaviour.reply_matrix import REPLY_MATRIX_FILE, ReplyMatrixSettings, build_reply_matrix
    from causalguard.models import load_model

    target = out or bundle / "data" / REPLY_MATRIX_FILE
    settings = ReplyMatrixSettings(
        prompts=prompts,
        prompt_offset=prompt_offset,
        personas=personas,
        persona_seed=persona_seed,
        levers=levers,
        batch_size=batch_size,
        replies=ReplySettings(max_new_tokens=max_new_tokens),
    )
    lm = load_model(model)
    summary = build_reply_matrix(
        lm,
        bundle,
        work or bundle.parent / f".reply-matrix-work-{bundle.name}",
        target,
        settings,
        restart=restart,
        log=typer.echo,
        backend=BatcherReplies() if continuous else None,
    )
    typer.echo(
        f"wrote {target}: {summary['rows']} rows ({summary['conditions']} conditions x {summary['personas']} "
        f"personas, each the mean of {summary['prompts']} replies) in {summary['seconds']:.0f} s"
    )


def _other_judges(second: str | None, checks: list[str] | None) -> list[OtherJudge]:
    """The judges that selected nothing: the deciding second judge, then the check judges (veto only)."""
    from functools import cache

    from causalguard.graphs.behaviour.second_judge import load_other_judge
    from causalguard.models import load_model

    shared = cache(load_model)  # a probe and a contrast judge on one model load it once
    judges = [] if second is None else [load_other_judge(second, "second", load=shared)]
    return judges + [load_other_judge(spec, "check", field="--check-judge", load=shared) for spec in checks or []]
