"""Plain-text description of a bundle for the CLI."""

from __future__ import annotations

from typing import Any

from causalguard.bundle.format import Bundle


def _f(value: Any) -> str:
    return "n/a" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def describe_bundle(bundle: Bundle) -> str:
    doc = bundle.doc
    lines = [
        f"model: {bundle.model_name} ({bundle.fingerprint or 'no fingerprint'})",
        f"survey: method {doc['survey'].get('method', {}).get('name', '?')}, {doc['survey'].get('rows')} rows; "
        f"PC alpha {doc['discovery']['alpha']}, {doc['discovery']['bootstrap']} bootstraps",
        f"graph: {len(bundle.graph.nodes)} values, {len(bundle.graph.edges)} edges "
        f"({doc['effects']['dags_in_class']} DAGs in the class)",
    ]
    lines.append(f"  edges shipped: {doc['discovery'].get('edges_selected_by', 'one PC run on all rows')}")
    lines += [f"  {edge}" for edge in sorted(bundle.graph.edges, key=lambda e: -(e.stability or 0))]
    steered = doc["discovery"].get("interventions")
    if steered:
        count = doc["survey"].get("survey_rows")
        replies = doc["survey"].get("units") == "replies"
        observational = f"{count} of them unsteered" if replies else f"+ {count} survey rows"
        lines.append(
            f"interventional rows: {steered['rows']} ({observational}), "
            f"{len(steered['contexts'])} context columns as sources only"
        )
    if doc["discovery"].get("dropped"):
        lines.append("dropped: " + "; ".join(doc["discovery"]["dropped"]))
    evaluation = doc["evaluation"]
    if evaluation.get("applicable"):
        lines.append(
            f"held-out prediction ({evaluation['targets']} targets, {evaluation['pairs']} pairs, "
            f"{evaluation['test_personas']} test personas; moved beyond noise: {_f(evaluation['moved_share'])}):"
        )
        lines.append(f"  {'predictor':28s} {'AUROC':>7s} {'sign acc':>9s} {'MAE':>8s}")
        for name, m in evaluation["predictors"].items():
            lines.append(f"  {name:28s} {_f(m['auroc']):>7s} {_f(m['sign_accuracy']):>9s} {_f(m['mae']):>8s}")
        paper = evaluation["paper_statistic"]
        lines.append(
            f"  change rate: descendants {_f(paper['descendant']['rate'])} "
            f"(n={paper['descendant']['total']}), non-descendants {_f(paper['non_descendant']['rate'])} "
            f"(n={paper['non_descendant']['total']})"
        )
    else:
        lines.append(f"held-out prediction: n/a ({evaluation.get('reason')})")
    if "leave_one_lever_out" in evaluation:
        from causalguard.graphs.causal.interventions import render_interventions

        lines.append("leave one lever out (each lever predicted by a graph discovered without its rows):")
        lines += [
            f"  {line}" if line else "" for line in render_interventions(evaluation["leave_one_lever_out"]).splitlines()
        ]
    human = doc["human_comparison"]
    if human.get("reference") is None:
        lines.append(f"vs a human reference: {human.get('reason', 'no reference for this inventory')}")
        return "\n".join(lines)
    sk = human["skeleton"]
    lines.append(
        f"vs {human['reference']}: skeleton precision {_f(sk['precision'])}, recall {_f(sk['recall'])}, SHD {sk['shd']}"
    )
    if "circumplex_correlation" in human:
        cc = human["circumplex_correlation"]
        lines.append(
            f"  value correlations vs circumplex cosines: r = {_f(cc['r'])}, permutation p = {_f(cc['p_value'])}"
        )
    return "\n".join(lines)
