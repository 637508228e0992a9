"""``causalguard graph``: build, show, predict, compare and diff causal value graph bundles."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Literal

import typer

from causalguard.commands.options import MAX_SEED, split_list

graph_app = typer.Typer(help="Causal value graphs: build, predict, compare, diff, show.", no_args_is_help=True)


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
    seed: Annotated[int, typer.Option(max=MAX_SEED, min=0, help="Seed for resampling and splits.")] = 0,
    stability: Annotated[
        float,
        typer.Option(
            min=0.01,
            max=1.0,
            help="Stability selection: an edge ships when PC finds it in at least this share of the bootstrap graphs.",
        ),
    ] = 0.5,
    interventions: Annotated[
        Path | None,
        typer.Option(
            help="Interventional score matrix (folder or CSV; 'levers interventions' writes one, or the paper's "
            "steer_dim/player_name format): its rows join the survey's, with context columns (one per "
            "intended target and direction) as sources only, and the bundle adds leave-one-lever-out "
            "evaluation."
        ),
    ] = None,
    catalog: Annotated[
        Path | None,
        typer.Option(
            help="Bundle folder whose catalog.json maps lever ids to targets (--interventions in our format); "
            "default --out when it has one."
        ),
    ] = None,
    evaluate_levers: Annotated[
        bool, typer.Option(help="With --interventions: leave-one-lever-out evaluation (one PC run per lever).")
    ] = True,
    steering_only: Annotated[
        str | None,
        typer.Option(
            help="Keep the unsteered rows and only the rows steered by these comma-separated ids (the steer_dim or "
            "steering column), e.g. the paper's 'good' SAE features."
        ),
    ] = None,
    replies: Annotated[
        bool,
        typer.Option(
            help="SOURCE is a reply matrix ('behaviour reply-matrix'): its unsteered rows are the observational rows, "
            "all its rows the interventional ones (give --catalog), and the catalog forecast in the "
            "leave-one-lever-out table is the levers' measured effects on replies."
        ),
    ] = False,
) -> None:
    """Discover the causal value graph (PC; the edges stable over bootstraps ship), effects and evaluations."""
    from causalguard.bundle import save_bundle
    from causalguard.bundle.catalog import load_catalog
    from causalguard.graphs.causal.build import BuildSettings, build_bundle
    from causalguard.graphs.causal.contexts import id_layout
    from causalguard.graphs.causal.discovery import Knowledge, PCSettings
    from causalguard.graphs.causal.matrix import read_score_matrix
    from causalguard.graphs.show import describe_bundle

    matrix = read_score_matrix(source, id_columns=split_list(id_columns), exclude=exclude)
    if steering_only is not None:
        from causalguard.graphs.causal.change_rates import rows_steered_by

        matrix = rows_steered_by(matrix, split_list(steering_only) or [], what="--steering-only")
    knowledge = Knowledge(
        forbidden=_pairs(forbid, "--forbid"),
        required=_pairs(require, "--require"),
        sources_only=tuple(split_list(sources_only) or ()),
    )
    try:
        knowledge.check(matrix.columns)
        pc_settings = PCSettings(alpha=alpha, max_depth=max_depth, knowledge=knowledge)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    settings = BuildSettings(
        pc=pc_settings,
        bootstrap=bootstrap,
        workers=workers,
        seed=seed,
        stability=stability,
        evaluate_levers=evaluate_levers,
        units="replies" if replies else "survey",
    )
    steered = None if interventions is None else read_score_matrix(interventions)
    if replies:
        from causalguard.graphs.causal.contexts import unsteered_rows

        if interventions is not None:
            raise typer.BadParameter(
                "a reply matrix holds its own interventions: leave --interventions out", param_hint="--replies"
            )
        if catalog is None:
            raise typer.BadParameter(
                "a reply matrix names catalog levers: give --catalog BUNDLE (the bundle whose "
                "levers steered the replies)",
                param_hint="--catalog",
            )
        interventions, steered = source, matrix
        matrix = unsteered_rows(matrix, str(source))
    levers = load_catalog(catalog if catalog is not None else out) if steered is not None else None
    if catalog is not None and levers is None:
        raise typer.BadParameter(f"{catalog} has no catalog.json", param_hint="--catalog")
    if steered is not None and levers is None and id_layout(steered, "--interventions")[0] == "steering":
        # our format names levers, not values: without their targets every row would be 'do:other'
        raise typer.BadParameter(
            f"{interventions} names catalog levers, and {out} has no catalog.json to map "
            "them to their target values; give --catalog BUNDLE (the bundle whose levers "
            "were applied)",
            param_hint="--catalog",
        )
    bundle = build_bundle(
        matrix, settings, source=source, interventions=steered, catalog=levers, interventions_source=interventions
    )
    save_bundle(bundle, out)
    typer.echo(describe_bundle(bundle))
    typer.echo(f"bundle written to {out}")
    if replies and (out.parent / "bundle.json").is_file():
        from causalguard.bundle.integrity import seal_bundle

        seal_bundle(out.parent)  # the reply graph inside a model's bundle: its hashes now cover the new files
        typer.echo(f"resealed {out.parent}")


@graph_app.command("show")
def graph_show_command(bundle: Annotated[Path, typer.Argument(help="Bundle folder.")]) -> None:
    """Print a bundle's graph, stability, evaluation and human comparison."""
    from causalguard.bundle import load_bundle
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
    """Predict every value's change under do(value += delta): the median over bootstrap graphs and their
    5th-95th percentile band."""
    from causalguard.bundle import load_bundle

    loaded = load_bundle(bundle)
    direct: dict[str, float] = {}
    for text in do:
        name, sep, number = text.partition("=")
        if name.strip() in direct:
            raise typer.BadParameter(
                f"{name.strip()} is given twice ({text!r}); give each value once", param_hint="--do"
            )
        try:
            direct[name.strip()] = float(number)
        except ValueError:
            raise typer.BadParameter(f"expected VALUE=DELTA, got {text!r}", param_hint="--do") from None
        if not math.isfinite(direct[name.strip()]):
            raise typer.BadParameter(f"DELTA must be a finite number, got {text!r}", param_hint="--do")
        if not sep:
            raise typer.BadParameter(f"expected VALUE=DELTA, got {text!r}", param_hint="--do")
    try:
        predictions = loaded.effects.predict_lever(direct)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="--do") from None
    draws = loaded.effects.samples.shape[0]
    typer.echo(
        f"do({', '.join(f'{k} {v:+g}' for k, v in direct.items())}) on {loaded.model_name}: "
        + (
            f"median over {draws} bootstrap graphs, band = their 5th-95th percentiles"
            if draws
            else "class-mean total effect (no bootstrap graphs in the bundle: no band)"
        )
    )
    for p in predictions:
        flag = "" if p.value not in direct else "  (intervened)"
        typer.echo(f"  {p.value:16s} {p.change:+.4f}   band [{p.low:+.4f}, {p.high:+.4f}]{flag}")


@graph_app.command("evaluate")
def graph_evaluate_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")],
    test: Annotated[
        Path,
        typer.Option(
            help="Interventional score matrix (CSV or survey folder): the paper's format "
            "(steer_dim, player_name) or ours (condition, steering)."
        ),
    ],
    random_graphs: Annotated[int, typer.Option(min=0, help="Random DAGs with the graph's edge count.")] = 20,
    bootstraps: Annotated[int, typer.Option(min=0, help="Resamples of interventions for the intervals.")] = 1000,
    out: Annotated[Path | None, typer.Option(help="Also write the figures as JSON here.")] = None,
    leave_one_out: Annotated[
        Path | None,
        typer.Option(
            help="Observational survey (folder or CSV): instead of the bundle's graph, predict each intervention "
            "with a graph discovered on this survey plus the other interventions' rows (context columns per "
            "target and direction as sources only, as graph build --interventions), without its own."
        ),
    ] = None,
    learning_curve: Annotated[
        str | None,
        typer.Option(
            help="With --leave-one-out: comma-separated fractions of the training rows, e.g. 0.25,0.5,1 "
            "(leave-one-out AUROC against rows)."
        ),
    ] = None,
    alpha: Annotated[
        float, typer.Option(min=0.0001, max=0.5, help="PC's significance level (--leave-one-out).")
    ] = 0.05,
    targets_from: Annotated[
        Path | None,
        typer.Option(
            help="Score matrix (the training one) whose largest change per intervention is the target of "
            "interventions that name no value (the paper's SAE features)."
        ),
    ] = None,
    replies: Annotated[
        bool,
        typer.Option(
            help="--test is a reply matrix ('behaviour reply-matrix'): leave one lever out with its own unsteered rows "
            "as the observational ones (no --leave-one-out survey), catalog forecasts in reply units."
        ),
    ] = False,
) -> None:
    """Hold the bundle's graph against an interventional test matrix: per intervention, the change of every
    other value (steered minus the same persona unsteered) predicted from the target's own change, by the
    graph and by its baselines."""
    from causalguard.bundle import load_bundle
    from causalguard.graphs.causal.discovery import PCSettings
    from causalguard.graphs.causal.interventions import evaluate_interventions, render_interventions
    from causalguard.graphs.causal.matrix import read_score_matrix

    loaded = load_bundle(bundle)
    matrix = read_score_matrix(test)
    target_map = None
    if targets_from is not None:
        if leave_one_out is not None:
            raise typer.BadParameter("--leave-one-out reads targets from lever ids only", param_hint="--targets-from")
        from causalguard.graphs.causal.change_rates import largest_change_targets

        target_map = largest_change_targets(read_score_matrix(targets_from))
    if replies and leave_one_out is not None:
        raise typer.BadParameter(
            "a reply matrix holds its own observational rows: leave --leave-one-out out", param_hint="--replies"
        )
    if leave_one_out is None and not replies:
        if learning_curve is not None:
            raise typer.BadParameter("needs --leave-one-out SURVEY (or --replies)", param_hint="--learning-curve")
        doc = evaluate_interventions(
            matrix, loaded, random_graphs=random_graphs, bootstraps=bootstraps, target_map=target_map
        )
        typer.echo(f"{loaded.model_name}: graph with {len(loaded.graph.edges)} edges against {test}")
    else:
        from causalguard.graphs.causal.leave_one_out import learning_curve as curve
        from causalguard.graphs.causal.leave_one_out import leave_one_lever_out

        survey = None if leave_one_out is None else read_score_matrix(leave_one_out)
        units: Literal["survey", "replies"] = "replies" if replies else "survey"
        settings = PCSettings(alpha=alpha)
        doc = leave_one_lever_out(
            survey, matrix, loaded, settings, random_graphs=random_graphs, bootstraps=bootstraps, units=units
        )
        typer.echo(
            f"{loaded.model_name}: leave one lever out, {doc['training_rows']} training rows "
            f"({0 if survey is None else survey.shape[0]} survey + {matrix.shape[0]} interventional), median "
            f"{doc['edges_per_graph']:.0f} edges among the values per graph, against {test}"
        )
        if learning_curve is not None:
            try:
                fractions = [float(x) for x in learning_curve.split(",")]
            except ValueError:
                raise typer.BadParameter(
                    f"expected fractions like 0.25,0.5,1; got {learning_curve!r}", param_hint="--learning-curve"
                ) from None
            if not all(0 < f <= 1 for f in fractions):
                raise typer.BadParameter("fractions must be in (0, 1]", param_hint="--learning-curve")
            doc["learning_curve"] = curve(survey, matrix, loaded, settings, fractions, units=units)
    typer.echo(render_interventions(doc))
    for point in doc.get("learning_curve", []):
        typer.echo(
            f"  learning curve: {point['training_rows']} rows ({point['fraction']:.0%}, {point['repeats']} "
            f"draws): graph AUROC {point['graph_auroc']}, correlation {point['correlation_auroc']}, "
            f"{point['edges']:.1f} edges"
        )
    if out is not None:
        out.write_text(json.dumps(doc, indent=2) + "\n")
        typer.echo(f"wrote {out}")


@graph_app.command("change-rates")
def graph_change_rates_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder (its graph's descendants are 'expected').")],
    test: Annotated[
        Path,
        typer.Option(
            help="Interventional score matrix: the paper's format (steer_dim, "
            "player_name) or ours (condition, steering)."
        ),
    ],
    changed_above: Annotated[
        float | None,
        typer.Option(min=0.0, max=2.0, help="A value changed when |mean change over personas| exceeds this."),
    ] = None,
    changed_p: Annotated[
        float | None,
        typer.Option(
            min=0.0001, max=0.5, help="Instead: a value changed when a paired t-test over personas has p below this."
        ),
    ] = None,
    targets_from: Annotated[
        Path | None,
        typer.Option(
            help="Score matrix (the training one) whose largest change per SAE feature is that feature's target; "
            "default: every value a feature changed is one of its targets."
        ),
    ] = None,
    only: Annotated[str | None, typer.Option(help="Comma-separated intervention ids to keep.")] = None,
    paper_table: Annotated[
        Path | None,
        typer.Option(help="The paper's Table 2 CSV (table2_*.csv) to compare with (its SAE rows, learned graph)."),
    ] = None,
    paper_rows: Annotated[str, typer.Option(help="Which rows of --paper-table: sae or prompt.")] = "sae",
    out: Annotated[Path | None, typer.Option(help="Also write the table as JSON here.")] = None,
) -> None:
    """The paper's Table 2 statistic: per target value, how often its graph descendants changed ("expected")
    against the other values ("unexpected") when an intervention changed it."""
    from causalguard.bundle import load_bundle
    from causalguard.graphs.causal.change_rates import (
        ChangeRule,
        change_rate_table,
        compare_with_paper,
        largest_change_targets,
        read_paper_table,
    )
    from causalguard.graphs.causal.matrix import read_score_matrix

    if changed_above is not None and changed_p is not None:
        raise typer.BadParameter("give --changed-above or --changed-p, not both", param_hint="--changed-p")
    if paper_rows not in ("sae", "prompt"):
        raise typer.BadParameter(f"expected sae or prompt, got {paper_rows!r}", param_hint="--paper-rows")
    rule = (
        ChangeRule("t_test", alpha=changed_p)
        if changed_p is not None
        else ChangeRule("threshold", threshold=changed_above or 0.0)
    )
    loaded = load_bundle(bundle)
    matrix = read_score_matrix(test)
    target_map = largest_change_targets(read_score_matrix(targets_from)) if targets_from is not None else None
    table = change_rate_table(matrix, loaded.graph, rule, target_map=target_map, interventions=split_list(only))
    doc: dict[str, object] = {"bundle": str(bundle), "test": str(test), "table": table}
    typer.echo(
        f"{len(loaded.graph.edges)} edges; {table['interventions']} interventions; changed: {table['rule']}; "
        f"targets: {table['targets']}"
    )
    typer.echo(f"{'value':<24} {'targets':>7} {'desc':>4} {'expected':>9} {'unexpected':>10}")
    comparison = None
    if paper_table is not None:
        comparison = compare_with_paper(table, read_paper_table(paper_table, paper_rows))  # type: ignore[arg-type]
        doc["paper"] = comparison
    for value, row in table["per_value"].items():
        line = (
            f"{value:<24} {row['interventions']:>7} {row['descendants']:>4} {_rate(row['expected']):>9} "
            f"{_rate(row['unexpected']):>10}"
        )
        if comparison is not None:
            paper = comparison["per_value"][value]
            line += f"   paper {_rate(paper['expected']['paper']):>6} {_rate(paper['unexpected']['paper']):>6}"
        typer.echo(line)
    typer.echo(f"{'mean':<37} {_rate(table['mean_expected']):>9} {_rate(table['mean_unexpected']):>10}")
    if comparison is not None:
        means = comparison["means"]
        typer.echo(
            f"paper's means: expected {_rate(means['expected']['paper'])}, unexpected "
            f"{_rate(means['unexpected']['paper'])}; ours minus paper {means['expected']['difference']:+.3f}, "
            f"{means['unexpected']['difference']:+.3f}; cells empty on both sides or filled on both: "
            f"{comparison['empty_cells_agree']}/{comparison['cells']}"
        )
    if out is not None:
        out.write_text(json.dumps(doc, indent=2) + "\n")
        typer.echo(f"wrote {out}")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@graph_app.command("seal")
def graph_seal_command(bundle: Annotated[Path, typer.Argument(help="Bundle folder.")]) -> None:
    """Record the SHA-256 of every file of a bundle in its bundle.json (after an intended edit); loading checks
    them. Offline commands that write into a bundle seal it themselves."""
    from causalguard.artifacts import BUNDLE_FILE
    from causalguard.bundle import load_bundle
    from causalguard.bundle.integrity import seal_bundle

    if not (bundle / BUNDLE_FILE).exists():
        raise typer.BadParameter(f"{bundle} has no {BUNDLE_FILE}", param_hint="BUNDLE")
    record = seal_bundle(bundle)
    load_bundle(bundle)  # what was sealed must load: schema, catalog, effects and judge checks
    typer.echo(f"sealed {bundle}: {len(record['files'])} files and {BUNDLE_FILE}")


@graph_app.command("compare")
def graph_compare_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")],
    reference: Annotated[
        Path | None, typer.Option(help="Reference graph (GraphML or JSON); default: Schwartz's circumplex.")
    ] = None,
    permutations: Annotated[int, typer.Option(min=99, help="Permutations for the Mantel p-value.")] = 9999,
) -> None:
    """Compare a bundle's graph with a human reference structure."""
    from causalguard.bundle import load_bundle
    from causalguard.graphs.causal.reference import read_reference

    loaded = load_bundle(bundle)
    if reference is None:
        typer.echo(json.dumps(loaded.doc["human_comparison"], indent=2))
        return
    from causalguard.graphs.causal.reference import skeleton_scores

    typer.echo(
        json.dumps(
            {"reference": str(reference), "skeleton": skeleton_scores(loaded.graph, read_reference(reference))},
            indent=2,
        )
    )


@graph_app.command("diff")
def graph_diff_command(
    old: Annotated[Path, typer.Argument(help="First bundle folder.")],
    new: Annotated[Path, typer.Argument(help="Second bundle folder.")],
) -> None:
    """Edges gained, lost, reversed and re-marked between two bundles (two models or two runs)."""
    from causalguard.bundle import load_bundle
    from causalguard.graphs.causal.reference import diff_graphs

    a, b = load_bundle(old), load_bundle(new)
    typer.echo(f"{a.model_name} -> {b.model_name}")
    for kind, edges in diff_graphs(a.graph, b.graph).items():
        typer.echo(f"{kind} ({len(edges)}):")
        for edge in edges:
            typer.echo(f"  {edge}")
