"""``causalguard levers``: measure what every lever does to every value, and show a bundle's catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from causalguard.commands.options import (
    MAX_SEED,
    BackendOpt,
    RayOpt,
    survey_backend,
)

levers_app = typer.Typer(
    help="Levers (role prompts, SAE features): measure them into a bundle's catalog.", no_args_is_help=True
)


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise typer.BadParameter("strengths must be positive numbers, e.g. '0.25,0.5'")
    return values


@levers_app.command("measure")
def levers_measure_command(
    bundle: Annotated[Path, typer.Option(help="Bundle folder; catalog.json and CATALOG.md are written into it.")],
    sae: Annotated[Path | None, typer.Option(help="SAE folder (sae-lens format); default BUNDLE/sae.")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Registry name, folder, .gguf or HF id.")] = (
        "smollm2-135m-instruct"
    ),
    inventory: Annotated[str, typer.Option(help="Inventory the bundle was built with.")] = "schwartz-basic-10",
    work: Annotated[Path | None, typer.Option(help="Work folder (resumable); default BUNDLE/../.levers-work.")] = None,
    personas: Annotated[int, typer.Option(min=2, help="Held-out personas every lever is measured on.")] = 5,
    strengths: Annotated[str, typer.Option(help="SAE strengths, in units of the layer's residual norm.")] = "0.25,0.5",
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    backend: BackendOpt = "local",
    ray: RayOpt = None,
) -> None:
    """Propose role and SAE levers, measure each over held-out personas, write the catalog."""
    from causalguard.graphs.levers.build import CatalogSettings, build_levers_catalog
    from causalguard.graphs.levers.measure import MeasureSettings
    from causalguard.models import load_model
    from causalguard.values import load_inventory

    lm = load_model(model)
    from causalguard.artifacts import SAE_CONFIG, SAE_FOLDER

    default_sae = bundle / SAE_FOLDER
    sae_dir = sae if sae is not None else (default_sae if (default_sae / SAE_CONFIG).exists() else None)
    settings = CatalogSettings(strengths=_floats(strengths), measure=MeasureSettings(personas=personas))
    catalog = build_levers_catalog(
        lm,
        load_inventory(inventory),
        bundle,
        sae_dir,
        work or bundle.parent / f".levers-work-{bundle.name}",
        settings,
        progress=not quiet,
        backend=survey_backend(backend, ray),
    )
    typer.echo(
        f"{len(catalog.levers)} levers measured on {len(catalog.personas)} personas; "
        f"wrote {bundle / 'catalog.json'} and {bundle / 'CATALOG.md'}"
    )


@levers_app.command("extend")
def levers_extend_command(
    bundle: Annotated[Path, typer.Option(help="Bundle folder with catalog.json; the new levers are added to it.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Registry name, folder, .gguf or HF id.")] = (
        "smollm2-135m-instruct"
    ),
    inventory: Annotated[str, typer.Option(help="Inventory the bundle was built with.")] = "schwartz-basic-10",
    work: Annotated[
        Path | None, typer.Option(help="Work folder (resumable); default BUNDLE/../.levers-extend-<bundle name>.")
    ] = None,
    sweep: Annotated[
        str | None,
        typer.Option(
            help="Every catalog SAE feature with a target at these strengths, e.g. '0.1,-0.1' (residual-norm units)."
        ),
    ] = None,
    reply_wordings: Annotated[bool, typer.Option(help="The built-in reply-style role wordings.")] = False,
    wordings: Annotated[
        Path | None,
        typer.Option(help="The operator's role wordings (YAML: wordings: [{value, direction: up|down, text, name}])."),
    ] = None,
    only: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated ids: add only these of the variants (e.g. the "
            "ones the behaviour report found fluent)."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    backend: BackendOpt = "local",
    ray: RayOpt = None,
) -> None:
    """Measure more levers (SAE strength sweeps, role wordings) on the catalog's personas and add them."""
    from causalguard.bundle.catalog import load_catalog
    from causalguard.graphs.levers.build import extend_catalog
    from causalguard.graphs.levers.measure import MeasureSettings
    from causalguard.graphs.levers.variants import variant_levers
    from causalguard.models import load_model
    from causalguard.values import load_inventory

    catalog = load_catalog(bundle)
    if catalog is None:
        raise typer.BadParameter(
            f"{bundle} has no catalog.json; run 'causalguard levers measure --bundle {bundle}'", param_hint="--bundle"
        )
    try:
        levers, sources = variant_levers(catalog, sweep, reply_wordings, wordings)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--sweep") from None
    if only is not None:
        wanted = {x.strip() for x in only.split(",") if x.strip()}
        unknown = sorted(wanted - {lever.id for lever in levers})
        if unknown:
            raise typer.BadParameter(f"not among the variants asked for: {', '.join(unknown)}", param_hint="--only")
        levers = [lever for lever in levers if lever.id in wanted]
    if not levers:
        raise typer.BadParameter("nothing to add: give --sweep, --reply-wordings or --wordings")
    lm = load_model(model)
    extended = extend_catalog(
        lm,
        load_inventory(inventory),
        bundle,
        catalog,
        levers,
        sources,
        work or bundle.parent / f".levers-extend-{bundle.name}",
        MeasureSettings(personas=len(catalog.personas)),
        progress=not quiet,
        backend=survey_backend(backend, ray),
    )
    typer.echo(f"{len(extended.levers) - len(catalog.levers)} levers added; the catalog has {len(extended.levers)}")


@levers_app.command("interventions")
def levers_interventions_command(
    bundle: Annotated[Path, typer.Option(help="Bundle folder whose catalog levers are applied.")],
    out: Annotated[Path, typer.Option(help="Survey folder (resumable): scores.csv is the interventional matrix.")],
    personas: Annotated[int, typer.Option(min=2, help="Fresh personas, each unsteered and under every lever.")] = 12,
    persona_seed: Annotated[
        int,
        typer.Option(
            max=MAX_SEED, min=0, help="Their seed; keep it apart from the catalog's (1000) and the survey's (0)."
        ),
    ] = 4000,
    levers: Annotated[str | None, typer.Option(help="Comma-separated lever ids; default: every catalog lever.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model; default: the bundle's.")] = None,
    inventory: Annotated[str, typer.Option(help="Inventory the bundle was built with.")] = "schwartz-basic-10",
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    backend: BackendOpt = "local",
    ray: RayOpt = None,
) -> None:
    """Survey fresh personas unsteered and under every lever: an interventional score matrix (personas x
    levers rows) for 'graph build --sources-only' and 'graph evaluate --test'."""
    from causalguard.bundle.format import load_bundle
    from causalguard.graphs.levers.build import sae_for_catalog
    from causalguard.graphs.levers.measure import lever_survey_condition, survey_levers
    from causalguard.models import load_model
    from causalguard.roles.personas import generate_personas
    from causalguard.steering_conditions import NoSteering
    from causalguard.values import load_inventory

    scorer = survey_backend(backend, ray)
    catalog = load_bundle(bundle).catalog
    if catalog is None:
        raise typer.BadParameter(
            f"{bundle} has no catalog.json; run 'causalguard levers measure --bundle {bundle}'", param_hint="--bundle"
        )
    chosen = catalog.levers
    if levers is not None:
        wanted = [x.strip() for x in levers.split(",") if x.strip()]
        unknown = sorted(set(wanted) - {e.id for e in catalog.levers})
        if unknown:
            raise typer.BadParameter(f"not in the catalog: {', '.join(unknown)}", param_hint="--levers")
        chosen = [e for e in catalog.levers if e.id in wanted]
    lm = load_model(model or catalog.model.name)
    sae, norm = sae_for_catalog(lm, bundle, catalog, [e.spec() for e in chosen])
    steerings = [NoSteering(), *[lever_survey_condition(e.spec(), sae, norm) for e in chosen]]
    typer.echo(
        f"interventions: {personas} personas x {len(steerings)} conditions (unsteered + {len(chosen)} "
        f"levers) = {personas * len(steerings)} rows -> {out}",
        err=True,
    )
    survey_levers(
        lm,
        load_inventory(inventory),
        generate_personas(personas, seed=persona_seed),
        steerings,
        out,
        progress=not quiet,
        backend=scorer,
    )
    typer.echo(f"wrote {out / 'scores.csv'}")


@levers_app.command("vectors")
def levers_vectors_command(
    bundle: Annotated[Path, typer.Option(help="Bundle folder; the vectors are written to BUNDLE/vectors/.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model; default: the bundle's.")] = None,
    work: Annotated[
        Path | None, typer.Option(help="Work folder (resumable); default BUNDLE/../.vectors-<bundle name>.")
    ] = None,
    prompts: Annotated[int, typer.Option(min=4, help="Dev prompts, balanced over values.")] = 24,
    prompt_offset: Annotated[
        int,
        typer.Option(min=0, help="Skip this many of the balanced dev prompts (the report reads 0-20, confirm 20-60)."),
    ] = 60,
    personas: Annotated[int, typer.Option(min=1, help="The assistant prompt plus generated personas.")] = 2,
    persona_seed: Annotated[
        int, typer.Option(max=MAX_SEED, min=0, help="Their seed, apart from the report's (2000).")
    ] = 5000,
    max_new_tokens: Annotated[int, typer.Option(min=8, max=512, help="Reply length.")] = 64,
    restart: Annotated[bool, typer.Option(help="Discard the work folder's replies.")] = False,
    continuous: Annotated[
        bool,
        typer.Option(
            help="Generate through the serving decode loop and its prefix cache (faster with long persona prompts)."
        ),
    ] = True,
    source: Annotated[
        str,
        typer.Option(
            help="replies: from the model's own replies (the options above); labelled: from the labelled "
            "replies' dev half, added beside the replies' vectors as <value>.labelled at their layers (seconds)."
        ),
    ] = "replies",
) -> None:
    """Extract one steering vector per value from the model's own replies on dev prompts (inclined minus
    disinclined reply-style wording, judge-filtered, mean over reply tokens, layer chosen on split halves),
    or, with --source labelled, from the labelled replies' dev half."""
    from causalguard.bundle.format import load_bundle
    from causalguard.graphs.behaviour.replies import ReplySettings
    from causalguard.graphs.behaviour.reply_backends import BatcherReplies
    from causalguard.graphs.behaviour.report import reply_personas
    from causalguard.graphs.levers.vectors import VectorSettings, extract_vectors
    from causalguard.judging.judge import load_probe_judge
    from causalguard.judging.prompt_sets import load_prompts
    from causalguard.models import load_model

    if source not in ("replies", "labelled"):
        raise typer.BadParameter(f"unknown source {source!r}; use replies or labelled", param_hint="--source")
    loaded = load_bundle(bundle)
    if loaded.catalog is None:
        raise typer.BadParameter(f"{bundle} has no catalog.json", param_hint="--bundle")
    lm = load_model(model or loaded.catalog.model.name)
    if source == "labelled":
        from causalguard.graphs.levers.labelled_vectors import add_labelled_vectors
        from causalguard.judging.labelled import load_labelled

        section = add_labelled_vectors(
            lm,
            bundle / "vectors",
            load_labelled(dimensions=loaded.catalog.dimensions),
            lambda x: typer.echo(x, err=True),
        )
        typer.echo(f"wrote {bundle / 'vectors'}: {len(section['per_value'])} labelled directions")
        return
    judge = load_probe_judge(bundle, lm)
    dims = list(judge.dimensions)
    chosen = list(load_prompts(dimensions=dims).split("dev").balanced_slice(prompt_offset, prompts))
    settings = VectorSettings(replies=ReplySettings(max_new_tokens=max_new_tokens))
    card = extract_vectors(
        lm,
        judge,
        dims,
        chosen,
        reply_personas(personas, persona_seed),
        work or bundle.parent / f".vectors-{bundle.name}",
        bundle / "vectors",
        settings,
        restart=restart,
        log=lambda line: typer.echo(line, err=True),
        backend=BatcherReplies() if continuous else None,
    )
    layers = ", ".join(f"{v} L{info['layer']}" for v, info in card["per_value"].items())
    typer.echo(f"wrote {bundle / 'vectors'}: {layers}")


@levers_app.command("adapters")
def levers_adapters_command(
    bundle: Annotated[Path, typer.Option(help="Bundle folder; the adapters are written to BUNDLE/adapters/.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model; default: the bundle's.")] = None,
    values: Annotated[str | None, typer.Option(help="Comma-separated values; default: every value.")] = None,
    directions: Annotated[str, typer.Option(help="Comma-separated: up, down or both.")] = "up,down",
    work: Annotated[
        Path | None, typer.Option(help="Work folder (resumable); default BUNDLE/../.adapters-<bundle name>.")
    ] = None,
    prompts: Annotated[int, typer.Option(min=8, help="Dev prompts, balanced over values.")] = 48,
    prompt_offset: Annotated[
        int,
        typer.Option(
            min=0,
            help="Skip this many of the balanced dev prompts (the report reads 0-20, confirm 20-60, vectors 60-84).",
        ),
    ] = 84,
    personas: Annotated[int, typer.Option(min=1, help="The assistant prompt plus generated personas.")] = 1,
    persona_seed: Annotated[
        int, typer.Option(max=MAX_SEED, min=0, help="Their seed, apart from the report's (2000).")
    ] = 6000,
    samples: Annotated[
        int, typer.Option(min=0, max=16, help="Sampled candidates per wording, besides the greedy one.")
    ] = 3,
    epochs: Annotated[int, typer.Option(min=1, max=20)] = 3,
    rank: Annotated[int, typer.Option(min=1, max=64, help="LoRA rank.")] = 8,
    loss: Annotated[
        str, typer.Option(help="sft (the chosen replies) or dpo (chosen over rejected, plus SFT).")
    ] = "sft",
    learning_rate: Annotated[float, typer.Option(min=1e-6, max=1e-1)] = 5e-4,
    restart: Annotated[bool, typer.Option(help="Discard the work folder's candidate replies.")] = False,
    continuous: Annotated[
        bool,
        typer.Option(
            help="Generate through the serving decode loop and its prefix cache (faster with long persona prompts)."
        ),
    ] = True,
) -> None:
    """Train value adapters: per value and direction a LoRA adapter (peft) that prefers the model's own
    judge-ranked replies under the value's reply-style wording, for the plain conversation (dev prompts)."""
    from causalguard.bundle.behaviour import load_behaviour
    from causalguard.bundle.format import load_bundle
    from causalguard.graphs.behaviour.reply_backends import BatcherReplies
    from causalguard.graphs.behaviour.report import reply_personas
    from causalguard.graphs.levers.adapters import DIRECTIONS, AdapterSettings, train_value_adapters
    from causalguard.judging.judge import load_probe_judge
    from causalguard.judging.prompt_sets import load_prompts
    from causalguard.models import load_model

    loaded = load_bundle(bundle)
    if loaded.catalog is None:
        raise typer.BadParameter(f"{bundle} has no catalog.json", param_hint="--bundle")
    behaviour = load_behaviour(bundle)
    if behaviour is None:
        raise typer.BadParameter(
            f"{bundle} has no behaviour.json (its reply-quality calibration filters the "
            f"candidates); run 'causalguard behaviour report --bundle {bundle}'",
            param_hint="--bundle",
        )
    if loss not in ("sft", "dpo"):
        raise typer.BadParameter(f"expected sft or dpo, got {loss!r}", param_hint="--loss")
    wanted = [d.strip() for d in directions.split(",") if d.strip()]
    if not wanted or any(d not in DIRECTIONS for d in wanted):
        raise typer.BadParameter(f"expected up, down or 'up,down', got {directions!r}", param_hint="--directions")
    lm = load_model(model or loaded.catalog.model.name)
    judge = load_probe_judge(bundle, lm)
    dims = list(judge.dimensions)
    chosen_values = [v.strip() for v in values.split(",") if v.strip()] if values else dims
    unknown = [v for v in chosen_values if v not in dims]
    if unknown:
        raise typer.BadParameter(
            f"unknown values {', '.join(unknown)}; the judge has {', '.join(dims)}", param_hint="--values"
        )
    chosen = list(load_prompts(dimensions=dims).split("dev").balanced_slice(prompt_offset, prompts))
    settings = AdapterSettings(samples=samples, epochs=epochs, rank=rank, loss=loss, learning_rate=learning_rate)
    trained = train_value_adapters(
        lm,
        judge,
        dims,
        chosen_values,
        [DIRECTIONS[d] for d in wanted],
        chosen,
        reply_personas(personas, persona_seed),
        behaviour.calibration,
        work or bundle.parent / f".adapters-{bundle.name}",
        bundle / "adapters",
        settings,
        restart=restart,
        log=lambda line: typer.echo(line, err=True),
        backend=BatcherReplies() if continuous else None,
    )
    typer.echo(
        f"wrote {len(trained)} adapters to {bundle / 'adapters'}: "
        + ", ".join(f"{t.name} ({t.pairs} pairs)" for t in trained)
    )


@levers_app.command("show")
def levers_show_command(bundle: Annotated[Path, typer.Argument(help="Bundle folder.")]) -> None:
    """Print a bundle's catalog report (rendered from catalog.json)."""
    from causalguard.bundle.catalog import load_catalog, render_report

    catalog = load_catalog(bundle)
    if catalog is None:
        raise typer.BadParameter(f"{bundle} has no catalog.json; run 'causalguard levers measure --bundle {bundle}'")
    typer.echo(render_report(catalog))


@levers_app.command("export")
def levers_export_command(
    bundle: Annotated[Path, typer.Option(help="Bundle folder whose levers are exported.")],
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="llama-cpp-cvec (vector levers as llama.cpp control vectors), peft (value adapters as PEFT "
            "folders, for vLLM and Hugging Face) or gguf-lora (value adapters as llama.cpp LoRA adapters).",
        ),
    ],
    out: Annotated[Path, typer.Option(help="Folder to write the files and their .lever.json sidecars into.")],
    engine_model: Annotated[
        Path | None,
        typer.Option(help="The GGUF model file the engine serves; default: the bundle's embedded model's GGUF."),
    ] = None,
    lever: Annotated[
        list[str] | None, typer.Option(help="Export this lever (repeatable); default: every usable lever of the kind.")
    ] = None,
) -> None:
    """Export a bundle's levers for serving engines, each with a sidecar naming the lever, the model, the
    engine flag and the measured effect it should reproduce; prints the llama-server launch line."""
    from causalguard.graphs.levers.export import EXPORT_FORMATS, export_levers
    from causalguard.models.registry import EMBEDDED_MODELS

    if format not in EXPORT_FORMATS:
        raise typer.BadParameter(
            f"unknown format {format!r}; one of {', '.join(EXPORT_FORMATS)}", param_hint="--format"
        )
    if engine_model is None:
        from causalguard.bundle.format import load_bundle

        name = load_bundle(bundle).doc["model"]["name"]
        if name not in EMBEDDED_MODELS:
            raise typer.BadParameter(
                f"the bundle's model {name!r} is not embedded: give the GGUF the engine serves",
                param_hint="--engine-model",
            )
        engine_model = EMBEDDED_MODELS[name].locate_gguf()
    if not engine_model.is_file():
        raise typer.BadParameter(f"{engine_model} is not a file", param_hint="--engine-model")
    exported = export_levers(bundle, format, out, engine_model=engine_model, lever_ids=lever or ())
    if not exported:
        kind = "vector" if format == "llama-cpp-cvec" else "adapter"
        typer.echo(f"no lever to export: the catalog has no usable {kind} levers (name one with --lever)", err=True)
        raise typer.Exit(1)
    for item in exported:
        typer.echo(f"{item.lever_id}: {item.path} ({item.sidecar.name})")
    if format != "peft":
        flags = " ".join(item.launch_flag for item in exported)
        typer.echo(f"launch: llama-server -m {engine_model} {flags}")
