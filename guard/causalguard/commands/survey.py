"""``causalguard survey`` and ``causalguard methods``: measure a model's values, choose its scoring method."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from causalguard.commands.options import (
    MAX_SEED,
    BackendOpt,
    DimensionsOpt,
    InventoryOpt,
    ModelOpt,
    QuestionnaireOpt,
    RayOpt,
    split_list,
    survey_backend,
)

methods_app = typer.Typer(help="Compare scoring methods and choose a model's default.", no_args_is_help=True)


def survey_command(
    out: Annotated[Path, typer.Option(help="Output folder; rerunning the same command resumes it.")],
    model: ModelOpt = "smollm2-135m-instruct",
    inventory: InventoryOpt = "schwartz-basic-10",
    dimensions: DimensionsOpt = None,
    questionnaire: QuestionnaireOpt = None,
    personas: Annotated[int, typer.Option(min=0, help="Number of seeded synthetic personas.")] = 30,
    value_roles: Annotated[bool, typer.Option(help="Add inclined/disinclined roles for every dimension.")] = True,
    anchors: Annotated[bool, typer.Option(help="Add the known-group anchor personas (validity checks).")] = True,
    roles_file: Annotated[
        Path | None, typer.Option(help="Extra roles, YAML or JSONL (docs/formats.md: roles file).")
    ] = None,
    method: Annotated[
        str, typer.Option(help="auto (the model's stored choice), yesno, statement or generate.")
    ] = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Continuations per forward pass.")] = 32,
    prefix_reuse: Annotated[bool, typer.Option(help="Reuse the shared prompt prefix's KV cache.")] = True,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Generation length for 'generate'.")] = 100,
    agreement_sample: Annotated[
        int, typer.Option(min=0, help="Answers re-scored by generate-then-parse to report agreement.")
    ] = 0,
    seed: Annotated[int, typer.Option(max=MAX_SEED, min=0, help="Seed for personas and samples.")] = 0,
    dtype: Annotated[
        str, typer.Option(help="float32, or bfloat16 (~1.9x faster on AVX512-BF16 CPUs, less precise scores).")
    ] = "float32",
    restart: Annotated[bool, typer.Option(help="Discard answers of an --out folder made with other settings.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    backend: BackendOpt = "local",
    ray: RayOpt = None,
) -> None:
    """Run a value survey: roles x items on one model; writes answers, scores and a quality report."""
    from causalguard.graphs.survey.conditions import build_conditions, standard_roles
    from causalguard.graphs.survey.runner import SurveySettings, run_survey
    from causalguard.method_choice import default_method
    from causalguard.models.loading import load_model
    from causalguard.roles.roles_file import load_roles_file
    from causalguard.scoring.registry import METHOD_NAMES
    from causalguard.values.loading import load_inventory

    if method != "auto" and method not in METHOD_NAMES:
        raise typer.BadParameter(f"choose auto or one of {', '.join(METHOD_NAMES)}", param_hint="--method")
    inv = load_inventory(inventory, dimensions=split_list(dimensions), questionnaire=questionnaire)
    extra = load_roles_file(roles_file, inv) if roles_file else []
    try:
        lm = load_model(model, dtype=dtype)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--dtype") from None
    chosen = default_method(lm.name) if method == "auto" else method
    roles = standard_roles(
        inv, personas=personas, seed=seed, include_value_roles=value_roles, include_anchors=anchors, extra=extra
    )
    settings = SurveySettings(
        method=chosen,
        batch_size=batch_size,
        reuse_prefix=prefix_reuse,
        max_new_tokens=max_new_tokens,
        agreement_sample=agreement_sample,
        seed=seed,
    )
    conditions = build_conditions(roles)
    typer.echo(
        f"survey: {lm.name}, {len(inv.names)} dimensions, {sum(len(d.items) for d in inv.dimensions)} items, "
        f"{len(conditions)} conditions, method {chosen} -> {out}",
        err=True,
    )
    run_survey(
        lm, inv, conditions, settings, out, progress=not quiet, restart=restart, backend=survey_backend(backend, ray)
    )
    typer.echo((out / "quality.md").read_text())


@methods_app.command("compare")
def methods_compare_command(
    out: Annotated[Path, typer.Option(help="Folder for one survey per method and method_choice.json.")],
    model: ModelOpt = "smollm2-135m-instruct",
    inventory: InventoryOpt = "schwartz-basic-10",
    dimensions: DimensionsOpt = None,
    personas: Annotated[int, typer.Option(min=0, help="Synthetic personas per survey.")] = 10,
    methods: Annotated[str, typer.Option(help="Comma-separated methods to compare.")] = "yesno,statement",
    agreement_sample: Annotated[int, typer.Option(min=0, help="Generated answers for the agreement figure.")] = 48,
    store: Annotated[bool, typer.Option(help="Also record the choice as the model's default (dev checkouts).")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Survey the model with each method, compare reliability and validity, and choose a default."""
    from causalguard.graphs.survey.conditions import build_conditions, standard_roles
    from causalguard.graphs.survey.runner import SurveySettings, run_survey
    from causalguard.method_choice import choose_method, store_choice
    from causalguard.models.loading import load_model
    from causalguard.scoring.registry import METHOD_NAMES
    from causalguard.values.loading import load_inventory

    unknown = [m for m in split_list(methods) or [] if m not in METHOD_NAMES]
    if unknown or not split_list(methods):
        raise typer.BadParameter(
            f"unknown method(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(METHOD_NAMES)}",
            param_hint="--methods",
        )
    inv = load_inventory(inventory, dimensions=split_list(dimensions))
    lm = load_model(model)
    conditions = build_conditions(standard_roles(inv, personas=personas))
    reports: dict[str, dict[str, Any]] = {}
    for name in split_list(methods) or []:
        settings = SurveySettings(method=name, agreement_sample=agreement_sample)
        run_survey(lm, inv, conditions, settings, out / name, progress=not quiet)
        reports[name] = json.loads((out / name / "quality.json").read_text())
        typer.echo((out / name / "quality.md").read_text())
    choice = choose_method(reports)
    choice.update(model=lm.name, fingerprint=lm.fingerprint, personas=personas, inventory=inv.name)
    (out / "method_choice.json").write_text(json.dumps(choice, indent=2) + "\n")
    typer.echo(f"chosen: {choice['method']} — {choice['reasons']}")
    if store:
        typer.echo(f"stored in {store_choice(lm.name, choice)}")
