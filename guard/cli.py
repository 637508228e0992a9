"""The ``causalguard`` command line: a thin shell over the library (see ``causalguard --help``)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from causalguard.commands.behaviour import behaviour_app
from causalguard.commands.levers import levers_app
from causalguard.commands.sae import sae_app
from causalguard.commands.serve import plan_command, serve_command
from causalguard.errors import CausalguardError

app = typer.Typer(
    help="causalguard: measure, graph and steer the values of language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
methods_app = typer.Typer(help="Compare scoring methods and choose a model's default.", no_args_is_help=True)
app.add_typer(methods_app, name="methods")
graph_app = typer.Typer(help="Causal value graphs: build, predict, compare, diff, show.", no_args_is_help=True)
app.add_typer(graph_app, name="graph")
app.add_typer(sae_app, name="sae")
app.add_typer(levers_app, name="levers")
app.add_typer(behaviour_app, name="behaviour")
app.command("serve")(serve_command)
app.command("plan")(plan_command)

ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", help="Registry name (see 'causalguard models'), model folder, .gguf file or HF id."),
]
InventoryOpt = Annotated[
    str, typer.Option(help="Inventory: 'schwartz-basic-10' (shipped), a YAML file, or a ValueBench CSV.")
]
DimensionsOpt = Annotated[
    str | None, typer.Option(help="Comma-separated dimension names to keep, e.g. 'power,benevolence'.")
]
QuestionnaireOpt = Annotated[
    str | None, typer.Option(help="ValueBench CSV only: keep rows of this questionnaire.")
]


def _split(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


@app.command("models")
def models_command() -> None:
    """List the embedded models and whether each is installed."""
    from causalguard.models.registry import DEFAULT_MODEL, EMBEDDED_MODELS

    for name, spec in EMBEDDED_MODELS.items():
        status = "installed" if spec.is_installed() else f"NOT INSTALLED: {spec.install_command}"
        marker = " (default)" if name == DEFAULT_MODEL else ""
        typer.echo(f"{name}{marker}\n    {spec.description}\n    {status}")


@app.command("survey")
def survey_command(
    out: Annotated[Path, typer.Option(help="Output folder; rerunning the same command resumes it.")],
    model: ModelOpt = "smollm2-135m-instruct",
    inventory: InventoryOpt = "schwartz-basic-10",
    dimensions: DimensionsOpt = None,
    questionnaire: QuestionnaireOpt = None,
    personas: Annotated[int, typer.Option(min=0, help="Number of seeded synthetic personas.")] = 30,
    value_roles: Annotated[bool, typer.Option(help="Add inclined/disinclined roles for every dimension.")] = True,
    anchors: Annotated[bool, typer.Option(help="Add the known-group anchor personas (validity checks).")] = True,
    roles_file: Annotated[Path | None, typer.Option(help="Extra roles, YAML or JSONL (README: roles file).")] = None,
    method: Annotated[
        str, typer.Option(help="auto (the model's stored choice), yesno, statement or generate.")
    ] = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Continuations per forward pass.")] = 32,
    prefix_reuse: Annotated[bool, typer.Option(help="Reuse the shared prompt prefix's KV cache.")] = True,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Generation length for 'generate'.")] = 100,
    agreement_sample: Annotated[
        int, typer.Option(min=0, help="Answers re-scored by generate-then-parse to report agreement.")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed for personas and samples.")] = 0,
    dtype: Annotated[
        str, typer.Option(help="float32, or bfloat16 (~1.9x faster on AVX512-BF16 CPUs, less precise scores).")
    ] = "float32",
    restart: Annotated[bool, typer.Option(help="Discard answers of an --out folder made with other settings.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Run a value survey: roles x items on one model; writes answers, scores and a quality report."""
    from causalguard.graphs.survey.conditions import build_conditions, standard_roles
    from causalguard.graphs.survey.runner import SurveySettings, run_survey
    from causalguard.method_choice import default_method
    from causalguard.models.loading import load_model
    from causalguard.roles.roles_file import load_roles_file
    from causalguard.scoring.base import METHOD_NAMES
    from causalguard.values.loading import load_inventory

    if method != "auto" and method not in METHOD_NAMES:
        raise typer.BadParameter(f"choose auto or one of {', '.join(METHOD_NAMES)}", param_hint="--method")
    inv = load_inventory(inventory, dimensions=_split(dimensions), questionnaire=questionnaire)
    extra = load_roles_file(roles_file, inv) if roles_file else []
    try:
        lm = load_model(model, dtype=dtype)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--dtype") from None
    chosen = default_method(lm.name) if method == "auto" else method
    roles = standard_roles(inv, personas=personas, seed=seed, include_value_roles=value_roles,
                           include_anchors=anchors, extra=extra)
    settings = SurveySettings(method=chosen, batch_size=batch_size, reuse_prefix=prefix_reuse,
                              max_new_tokens=max_new_tokens, agreement_sample=agreement_sample, seed=seed)
    conditions = build_conditions(roles)
    typer.echo(f"survey: {lm.name}, {len(inv.names)} dimensions, {sum(len(d.items) for d in inv.dimensions)} items, "
               f"{len(conditions)} conditions, method {chosen} -> {out}", err=True)
    run_survey(lm, inv, conditions, settings, out, progress=not quiet, restart=restart)
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
    from causalguard.values.loading import load_inventory

    inv = load_inventory(inventory, dimensions=_split(dimensions))
    lm = load_model(model)
    conditions = build_conditions(standard_roles(inv, personas=personas))
    reports: dict[str, dict[str, Any]] = {}
    for name in _split(methods) or []:
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


def _pairs(texts: list[str] | None, option: str) -> tuple[tuple[str, str], ...]:
    out = []
    for text in texts or []:
        if ">" not in text:
            raise typer.BadParameter(f"expected FROM>TO, got {text!r}", param_hint=option)
        a, b = (part.strip() for part in text.split(">", 1))
        out.append((a, b))
    return tuple(out)


@graph_app.command("build")
def graph_build_command(
    source: Annotated[Path, typer.Argument(help="A survey output folder or a score-matrix CSV.")],
    out: Annotated[Path, typer.Option(help="Bundle folder to write.")],
    alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="Fisher-z significance level.")] = 0.05,
    max_depth: Annotated[int | None, typer.Option(help="Largest conditioning set (default: unlimited).")] = None,
    bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap resamples for edge stability.")] = 100,
    workers: Annotated[int, typer.Option(min=1, help="Processes for the bootstrap.")] = 2,
    id_columns: Annotated[
        str | None, typer.Option(help="Comma-separated id columns (default: known ones, e.g. steer_dim,player_name).")
    ] = None,
    exclude: Annotated[str, typer.Option(help="Regex of columns to ignore.")] = r"(:scstd$|^stds$|^scstds$)",
    forbid: Annotated[list[str] | None, typer.Option(help="Forbidden edge FROM>TO (repeatable).")] = None,
    require: Annotated[list[str] | None, typer.Option(help="Required edge FROM>TO (repeatable).")] = None,
    sources_only: Annotated[
        str | None, typer.Option(help="Comma-separated columns allowed only as causes (indicator columns).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for resampling and splits.")] = 0,
) -> None:
    """Discover the causal value graph (PC) with bootstrap stability, effects and evaluations."""
    from causalguard.graphs.bundle import save_bundle
    from causalguard.graphs.causal.build import BuildSettings, build_bundle
    from causalguard.graphs.causal.discovery import Knowledge, PCSettings
    from causalguard.graphs.causal.matrix import read_score_matrix
    from causalguard.graphs.show import describe_bundle

    matrix = read_score_matrix(source, id_columns=_split(id_columns), exclude=exclude)
    knowledge = Knowledge(forbidden=_pairs(forbid, "--forbid"), required=_pairs(require, "--require"),
                          sources_only=tuple(_split(sources_only) or ()))
    try:
        knowledge.check(matrix.columns)
        pc_settings = PCSettings(alpha=alpha, max_depth=max_depth, knowledge=knowledge)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    settings = BuildSettings(pc=pc_settings, bootstrap=bootstrap, workers=workers, seed=seed)
    bundle = build_bundle(matrix, settings, source=source)
    save_bundle(bundle, out)
    typer.echo(describe_bundle(bundle))
    typer.echo(f"bundle written to {out}")


@graph_app.command("show")
def graph_show_command(bundle: Annotated[Path, typer.Argument(help="Bundle folder.")]) -> None:
    """Print a bundle's graph, stability, evaluation and human comparison."""
    from causalguard.graphs.bundle import load_bundle
    from causalguard.graphs.show import describe_bundle

    typer.echo(describe_bundle(load_bundle(bundle)))


@graph_app.command("predict")
def graph_predict_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")],
    do: Annotated[
        list[str],
        typer.Option(help="Intervention VALUE=DELTA, e.g. power=-0.1 (repeatable: a lever's direct effects)."),
    ],
) -> None:
    """Predict every value's change under do(value += delta), with a 90% bootstrap band."""
    from causalguard.graphs.bundle import load_bundle

    loaded = load_bundle(bundle)
    direct: dict[str, float] = {}
    for text in do:
        name, sep, number = text.partition("=")
        try:
            direct[name.strip()] = float(number)
        except ValueError:
            raise typer.BadParameter(f"expected VALUE=DELTA, got {text!r}", param_hint="--do") from None
        if not sep:
            raise typer.BadParameter(f"expected VALUE=DELTA, got {text!r}", param_hint="--do")
    try:
        predictions = loaded.effects.predict_lever(direct)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="--do") from None
    typer.echo(f"do({', '.join(f'{k} {v:+g}' for k, v in direct.items())}) on {loaded.model_name}:")
    for p in predictions:
        flag = "" if p.value not in direct else "  (intervened)"
        typer.echo(f"  {p.value:16s} {p.change:+.4f}   90% band [{p.low:+.4f}, {p.high:+.4f}]{flag}")


@graph_app.command("compare")
def graph_compare_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")],
    reference: Annotated[
        Path | None, typer.Option(help="Reference graph (GraphML or JSON); default: Schwartz's circumplex.")
    ] = None,
    permutations: Annotated[int, typer.Option(min=99, help="Permutations for the Mantel p-value.")] = 9999,
) -> None:
    """Compare a bundle's graph with a human reference structure."""
    from causalguard.graphs.bundle import load_bundle
    from causalguard.graphs.causal.reference import read_reference

    loaded = load_bundle(bundle)
    if reference is None:
        typer.echo(json.dumps(loaded.doc["human_comparison"], indent=2))
        return
    from causalguard.graphs.causal.reference import skeleton_scores

    typer.echo(json.dumps({"reference": str(reference),
                           "skeleton": skeleton_scores(loaded.graph, read_reference(reference))}, indent=2))


@graph_app.command("diff")
def graph_diff_command(
    old: Annotated[Path, typer.Argument(help="First bundle folder.")],
    new: Annotated[Path, typer.Argument(help="Second bundle folder.")],
) -> None:
    """Edges gained, lost, reversed and re-marked between two bundles (two models or two runs)."""
    from causalguard.graphs.bundle import load_bundle
    from causalguard.graphs.causal.reference import diff_graphs

    a, b = load_bundle(old), load_bundle(new)
    typer.echo(f"{a.model_name} -> {b.model_name}")
    for kind, edges in diff_graphs(a.graph, b.graph).items():
        typer.echo(f"{kind} ({len(edges)}):")
        for edge in edges:
            typer.echo(f"  {edge}")


@app.command("pipeline")
def pipeline_command(
    out: Annotated[Path, typer.Option(help="Output folder for every stage.")] = Path("runs/default"),
    model: ModelOpt = "smollm2-135m-instruct",
    personas: Annotated[int, typer.Option(min=0, help="Synthetic personas in the survey.")] = 30,
    method: Annotated[str, typer.Option(help="Scoring method: auto (the model's stored choice) or a name.")] = "auto",
    bundle_dir: Annotated[Path | None, typer.Option(help="Where to write the bundle (default: OUT/bundle).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """The main job: survey the model (personas + value roles + anchors), then build its graph bundle."""
    survey_command(out=out / "survey", model=model, personas=personas, method=method, quiet=quiet)
    graph_build_command(source=out / "survey", out=bundle_dir or out / "bundle")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except CausalguardError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted; rerun the same command to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
