"""The graph on what the chatbot says: the reply matrix (persona x lever rows of mean reply-judge scores),
``graph build --replies`` on it (no row counted twice, leave one lever out with the levers' reply effects as
the catalog forecast) and the real model's reply path on a small slice."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from causalguard.bundle.catalog import save_catalog
from causalguard.cli import app
from causalguard.errors import ConfigError
from causalguard.graphs.behaviour.reply_matrix import chosen_levers, reply_rows, write_reply_matrix
from causalguard.graphs.causal.interventions import evaluate_interventions
from causalguard.graphs.causal.matrix import read_score_matrix
from tests.guard_fakes import DIMS, fake_bundle_v2, fake_catalog_v2
from tests.repo_paths import ROOT

SHIPPED = ROOT / "graphs/causalguard/graphs/smollm2-135m-instruct"
# the fake's reply-measured levers: their pushes on (achievement, power, benevolence)
PUSH = {
    "role:power:-": (0.0, -0.3, 0.0),
    "role:power:+": (0.0, 0.3, 0.0),
    "sae:f7:-0.5": (0.0, -0.5, 0.0),
    "sae:f7:-0.25": (0.0, -0.12, 0.0),
    "role:benevolence:+": (0.0, 0.0, 0.3),
}


def test_a_row_is_the_mean_over_a_personas_replies() -> None:
    scores = {
        (c, p, q): np.array([k, 2.0 * k, -k])
        for c in ("none", "lever")
        for p in ("a", "b")
        for k, q in enumerate(("q1", "q2", "q3"), start=1 if c == "none" else 4)
    }
    rows = reply_rows(scores, ["none", "lever"], ["a", "b"], ["q1", "q2", "q3"], DIMS)
    assert [r["condition"] for r in rows] == ["a", "b", "a|lever", "b|lever"]
    assert [r["steering"] for r in rows] == ["none", "none", "lever", "lever"]
    assert rows[0]["achievement"] == pytest.approx(2.0) and rows[2]["power"] == pytest.approx(10.0)
    assert rows[3]["benevolence"] == pytest.approx(-5.0)
    scores[("lever", "b", "q2")] = np.array([1.0, float("nan"), 0.0])
    with pytest.raises(ValueError, match="lever/b"):
        reply_rows(scores, ["none", "lever"], ["a", "b"], ["q1", "q2", "q3"], DIMS)


def test_the_lever_pattern_is_checked() -> None:
    levers = fake_catalog_v2().levers
    assert [e.id for e in chosen_levers(levers, r"role:power:[+-]")] == ["role:power:-", "role:power:+"]
    assert len(chosen_levers(levers, r"sae:.*")) == 3  # a full match: 'sae:f7' alone matches nothing
    with pytest.raises(ConfigError, match=r"--levers.*not a regular expression"):
        chosen_levers(levers, "role:(")
    with pytest.raises(ConfigError, match="no catalog lever"):
        chosen_levers(levers, "sae:f7")


def _flat(output: str) -> str:
    """CLI output without the error box's frame and line breaks."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", output).split())


def _reply_matrix(path: Path, personas: int = 12, seed: int = 0) -> Path:
    """Replies whose judge scores follow power -> achievement (0.5): unsteered personas, then each lever's push."""
    rng = np.random.default_rng(seed)
    true = np.eye(3)
    true[1, 0] = 0.5
    base = rng.normal(0, 0.3, size=(personas, 3)) @ true
    rows = [
        {"condition": f"p{i}", "role_kind": "persona", "steering": "none", **dict(zip(DIMS, base[i], strict=True))}
        for i in range(personas)
    ]
    for lever, push in PUSH.items():
        for i in range(personas):
            values = base[i] + np.array(push) @ true + rng.normal(0, 0.02, size=3)
            rows.append(
                {
                    "condition": f"p{i}|{lever}",
                    "role_kind": "persona",
                    "steering": lever,
                    **dict(zip(DIMS, values, strict=True)),
                }
            )
    write_reply_matrix(path, rows, DIMS)
    return path


def test_the_catalog_forecast_of_a_reply_matrix_is_the_levers_reply_effects(tmp_path: Path) -> None:
    from causalguard.graphs.causal.interventions import _catalog_effects, measured_interventions

    bundle = fake_bundle_v2()
    matrix = read_score_matrix(_reply_matrix(tmp_path / "m.csv"))
    interventions, skipped = measured_interventions(matrix, bundle)
    assert len(interventions) == 5 and not skipped
    survey, replies = _catalog_effects(interventions, bundle), _catalog_effects(interventions, bundle, "replies")
    assert survey is not None and replies is not None
    assert survey["role:power:+"]["achievement"] == pytest.approx(0.20)  # the survey measured +0.20 ...
    assert replies["role:power:+"]["achievement"] == pytest.approx(0.10)  # ... the replies +0.10
    doc = evaluate_interventions(matrix, bundle, random_graphs=0, bootstraps=0, units="replies")
    assert doc["interventions"] == 5 and "catalog_effects" in doc["predictors"]


def _bundle_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "levers"
    folder.mkdir()
    save_catalog(fake_catalog_v2(), folder)
    return folder


def test_graph_build_on_replies_counts_every_row_once(tmp_path: Path) -> None:
    matrix = _reply_matrix(tmp_path / "replies.csv")
    out = tmp_path / "reply_graph"
    result = CliRunner().invoke(
        app,
        [
            "graph",
            "build",
            str(matrix),
            "--replies",
            "--catalog",
            str(_bundle_folder(tmp_path)),
            "--out",
            str(out),
            "--bootstrap",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "bundle.json").read_text())
    assert doc["survey"]["units"] == "replies" and "reply-judge" in doc["survey"]["columns_used"]
    assert doc["survey"]["survey_rows"] == 12 and doc["survey"]["rows"] == 12 + 12 * 5  # unsteered rows once
    lolo = doc["evaluation"]["leave_one_lever_out"]
    assert lolo["interventions"] == 5 and lolo["training_rows"] == 72
    assert {"graph", "catalog_effects", "same_target_levers", "correlation"} <= set(lolo["predictors"])
    # the power -> achievement dependence is in the replies: PC finds the adjacency
    assert {frozenset((e["source"], e["target"])) for e in doc["graph"]["edges"]} >= {
        frozenset(("power", "achievement"))
    }


def test_graph_evaluate_on_replies_leaves_each_lever_out(tmp_path: Path) -> None:
    matrix = _reply_matrix(tmp_path / "replies.csv")
    folder = _bundle_folder(tmp_path)
    assert (
        CliRunner()
        .invoke(
            app,
            [
                "graph",
                "build",
                str(matrix),
                "--replies",
                "--catalog",
                str(folder),
                "--out",
                str(folder),
                "--bootstrap",
                "0",
                "--no-evaluate-levers",
            ],
        )
        .exit_code
        == 0
    )
    result = CliRunner().invoke(
        app,
        [
            "graph",
            "evaluate",
            str(folder),
            "--test",
            str(matrix),
            "--replies",
            "--random-graphs",
            "2",
            "--bootstraps",
            "50",
            "--out",
            str(tmp_path / "e.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "0 survey + 72 interventional" in result.output
    assert json.loads((tmp_path / "e.json").read_text())["interventions"] == 5


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--interventions", "{m}"], "leave --interventions out"),
        (["--catalog-missing"], "give --catalog"),
    ],
)
def test_graph_build_on_replies_refuses_what_it_cannot_use(tmp_path: Path, extra: list[str], message: str) -> None:
    matrix = _reply_matrix(tmp_path / "replies.csv")
    args = ["graph", "build", str(matrix), "--replies", "--out", str(tmp_path / "g"), "--bootstrap", "0"]
    if extra != ["--catalog-missing"]:
        args += [x.format(m=matrix) for x in extra] + ["--catalog", str(_bundle_folder(tmp_path))]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and message in _flat(result.output)


def test_a_reply_matrix_without_unsteered_rows_is_refused(tmp_path: Path) -> None:
    matrix = _reply_matrix(tmp_path / "replies.csv")
    lines = [line for line in matrix.read_text().splitlines(keepends=True) if ",none," not in line]
    matrix.write_text("".join(lines))
    result = CliRunner().invoke(
        app,
        [
            "graph",
            "build",
            str(matrix),
            "--replies",
            "--catalog",
            str(_bundle_folder(tmp_path)),
            "--out",
            str(tmp_path / "g"),
            "--bootstrap",
            "0",
        ],
    )
    assert isinstance(result.exception, ConfigError)
    assert str(matrix) in str(result.exception) and "0 unsteered row(s)" in str(result.exception)


def test_the_real_model_writes_a_reply_matrix_that_graph_tools_read(lm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from causalguard.graphs.behaviour.replies import ReplySettings
    from causalguard.graphs.behaviour.reply_matrix import ReplyMatrixSettings, build_reply_matrix

    bundle = tmp_path / "bundle"
    shutil.copytree(SHIPPED, bundle)
    settings = ReplyMatrixSettings(
        prompts=2, personas=3, levers=r"vector:stimulation:\+:L21:0\.15", replies=ReplySettings(max_new_tokens=8)
    )
    out = tmp_path / "m.csv"
    summary = build_reply_matrix(lm, bundle, tmp_path / "work", out, settings, log=lambda _: None)
    assert summary["rows"] == 6 and summary["replies"] == 12
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["steering"] for r in rows} == {"none", "vector:stimulation:+:L21:0.15"}
    assert all(-10 < float(r[v]) < 10 for r in rows for v in ("stimulation", "benevolence"))
    # a rerun reads the checkpoint and the judge cache: the same numbers
    again = tmp_path / "m2.csv"
    build_reply_matrix(lm, bundle, tmp_path / "work", again, settings, log=lambda _: None)
    assert again.read_text() == out.read_text()
    # every steered row pairs with its persona's unsteered row (how 'graph evaluate' measures a change)
    unsteered = {r["condition"] for r in rows if r["steering"] == "none"}
    assert len(unsteered) == 3 and all(r["condition"].split("|")[0] in unsteered for r in rows)


def _reply_graph(graph_auroc: float, interval: list[float] | None, best_baseline: float):  # type: ignore[no-untyped-def]
    """A reply graph power -> achievement (total effect 0.5) with a leave-one-lever-out table."""
    from causalguard.bundle.effects import EffectModel
    from causalguard.bundle.format import Bundle
    from causalguard.bundle.graph import ValueGraph, make_edge

    total = np.eye(3)
    total[1, 0] = 0.5
    evaluation = {
        "leave_one_lever_out": {
            "interventions": 40,
            "predictors": {
                "graph": {"auroc": graph_auroc, "auroc_ci": interval},
                "catalog_effects": {"auroc": best_baseline},
                "no_graph": {"auroc": 0.5},
            },
        }
    }
    return Bundle(
        {"model": {"name": "fake"}, "evaluation": evaluation},
        ValueGraph(tuple(DIMS), (make_edge("power", "achievement", "directed"),)),
        EffectModel(tuple(DIMS), total, np.zeros((0, 3, 3))),
        total,
        total,
    )


def _reply_plan(reply_graph):  # type: ignore[no-untyped-def]
    from causalguard.config.schema import LimitsSpec, ProfileSpec, TargetSpec
    from causalguard.planning import plan_levers

    bundle = fake_bundle_v2()
    bundle.reply_graph = reply_graph
    return plan_levers(
        ProfileSpec(targets={"power": TargetSpec(direction="decrease")}),
        bundle,
        LimitsSpec(max_levers=1),
        units="replies",
    ), bundle


def test_a_reply_plan_without_a_reply_graph_says_so_and_forecasts_from_the_levers() -> None:
    from causalguard.planning.explain import explain_plan

    plan, bundle = _reply_plan(None)
    assert plan.units == "replies" and [lever.id for lever in plan.levers] == ["role:power:-"]
    assert "no graph on replies in this bundle" in plan.graph_label and "not used" in plan.graph_label
    assert all(f.graph_change is None for f in plan.forecast)
    assert plan.forecast_for("achievement").change == pytest.approx(-0.15)  # the lever's reply side effect
    assert plan.graph_label in explain_plan(plan, bundle.catalog)  # type: ignore[arg-type]


def test_a_reply_graph_that_beats_the_catalog_forecasts_side_effects_in_reply_units() -> None:
    from causalguard.planning.explain import explain_plan

    plan, bundle = _reply_plan(_reply_graph(0.8, [0.7, 0.9], 0.6))
    assert plan.graph_label.startswith(
        "reply graph held-out AUROC 0.800 (95% CI 0.70-0.90) beats the best "
        "baseline (catalog_effects 0.600; reply graph, leave-one-lever-out, 40 levers)"
    )
    # the planned power change on replies (-0.30) pushed along power -> achievement (0.5)
    assert plan.forecast_for("achievement").graph_change == pytest.approx(-0.15)
    assert "(its forecasts are in replies units)" in explain_plan(plan, bundle.catalog)  # type: ignore[arg-type]
    # the survey graph stays out of reply plans: the fake's survey graph (0.6) would say -0.18
    assert plan.forecast_for("achievement").graph_change != pytest.approx(-0.18)


@pytest.mark.parametrize(
    ("auroc", "interval", "best", "why"),
    [
        (0.55, [0.48, 0.62], 0.70, "does not beat the best baseline (catalog_effects 0.700"),
        (0.60, [0.45, 0.75], 0.55, "its interval includes chance (0.5)"),
    ],
)
def test_a_reply_graph_that_does_not_beat_the_catalog_forecasts_nothing(
    auroc: float, interval: list[float], best: float, why: str
) -> None:
    plan, _ = _reply_plan(_reply_graph(auroc, interval, best))
    assert why in plan.graph_label and "not used for side effects" in plan.graph_label
    assert all(f.graph_change is None for f in plan.forecast)


def test_a_bundle_loads_its_reply_graph_and_refuses_one_on_other_values(tmp_path: Path) -> None:
    from causalguard.bundle.format import load_bundle

    matrix = _reply_matrix(tmp_path / "replies.csv")
    folder = _bundle_folder(tmp_path)
    runner = CliRunner()
    assert (
        runner.invoke(
            app, ["graph", "build", str(matrix), "--out", str(folder), "--bootstrap", "0", "--no-evaluate-levers"]
        ).exit_code
        == 0
    )
    assert load_bundle(folder).reply_graph is None
    result = runner.invoke(
        app,
        [
            "graph",
            "build",
            str(matrix),
            "--replies",
            "--catalog",
            str(folder),
            "--out",
            str(folder / "reply_graph"),
            "--bootstrap",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "resealed" in result.output  # the parent bundle's hashes cover the new folder
    loaded = load_bundle(folder)
    assert loaded.reply_graph is not None and loaded.reply_graph.graph.nodes == tuple(DIMS)
    assert loaded.reply_graph.doc["evaluation"]["leave_one_lever_out"]["interventions"] == 5
    shipped = tmp_path / "shipped"
    shutil.copytree(SHIPPED, shipped)
    shutil.rmtree(shipped / "reply_graph", ignore_errors=True)  # the shipped one, on the same values
    shutil.copytree(folder / "reply_graph", shipped / "reply_graph")
    from causalguard.bundle.integrity import seal_bundle

    seal_bundle(shipped)
    from causalguard.bundle.format import BundleMismatchError

    with pytest.raises(BundleMismatchError, match="reply_graph was built for weights"):  # another model's graph
        load_bundle(shipped)
    reply = json.loads((shipped / "reply_graph" / "bundle.json").read_text())
    reply["model"] = json.loads((shipped / "bundle.json").read_text())["model"]
    (shipped / "reply_graph" / "bundle.json").write_text(json.dumps(reply))
    seal_bundle(shipped / "reply_graph")
    seal_bundle(shipped)
    with pytest.raises(ConfigError, match="reply graph's values"):  # the same weights, other values
        load_bundle(shipped)
