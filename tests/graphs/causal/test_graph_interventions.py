"""``graph evaluate --test``: the bundle's graph against an interventional matrix in the paper's format."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from causalguard.bundle.effects import EffectModel
from causalguard.bundle.format import Bundle, save_bundle
from causalguard.bundle.graph import ValueGraph, make_edge
from causalguard.errors import ConfigError
from causalguard.graphs.causal.interventions import evaluate_interventions
from causalguard.graphs.causal.matrix import read_score_matrix

NODES = ("a", "b", "c", "d", "e")
# the true system: a -> b -> c (0.8 each); d and e stand alone
TRUE = np.eye(5)
TRUE[0, 1] = TRUE[1, 2] = 0.8
TRUE[0, 2] = 0.64


def _bundle(total: np.ndarray, edges: tuple = ()) -> Bundle:  # type: ignore[type-arg]
    graph = ValueGraph(NODES, edges)
    return Bundle({"model": {"name": "toy"}}, graph, EffectModel(NODES, total, np.zeros((0, 5, 5))), total, total)


def _paper_csv(path: Path, seed: int = 0, personas: int = 8, push: float = 0.5) -> Path:
    """Rows in the paper's layout: unsteered personas, then each value steered by +``push`` per persona."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, size=(personas, 5)) @ TRUE  # persona differences propagate like interventions
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["steer_dim", "player_name", *NODES, *(f"{v}:scstd" for v in NODES), "stds", "scstds"])
        for p in range(personas):
            writer.writerow(["", f"p{p}", *base[p], *([0.1] * 5), 1, 1])
        for x, name in enumerate(NODES):
            direct = np.zeros(5)
            direct[x] = push
            for p in range(personas):
                row = base[p] + direct @ TRUE + rng.normal(0, 0.02, size=5)
                writer.writerow([name.upper(), f"p{p}", *row, *([0.1] * 5), 1, 1])
    return path


def test_the_true_graph_beats_no_graph_and_random_graphs(tmp_path: Path) -> None:
    matrix = read_score_matrix(_paper_csv(tmp_path / "test.csv"))
    edges = (make_edge("a", "b", "directed"), make_edge("b", "c", "directed"))
    doc = evaluate_interventions(matrix, _bundle(TRUE, edges), random_graphs=10, bootstraps=200)
    table = doc["predictors"]
    assert doc["interventions"] == 5 and doc["pairs"] == 20
    # a -> b, a -> c, b -> c move beyond noise; the other 17 pairs only by chance (a t-test false positive)
    assert table["graph"]["auroc"] >= 0.8 and table["graph"]["sign_accuracy"] > 0.75
    assert table["no_graph"]["auroc"] == pytest.approx(0.5)
    assert table["same_target_levers"]["auroc"] == pytest.approx(0.5)  # one lever per target: no siblings
    assert table["graph"]["mae"] < table["no_graph"]["mae"]
    low, high = table["graph"]["auroc_ci"]
    assert low <= table["graph"]["auroc"] <= high and "random_graphs (mean of 10)" in table
    stat = doc["paper_statistic"]
    assert stat["descendant"]["rate"] == 1.0 and stat["non_descendant"]["rate"] < 0.25


def test_levers_with_the_same_target_predict_each_other(tmp_path: Path) -> None:
    path = _paper_csv(tmp_path / "test.csv")
    lines = path.read_text().splitlines(keepends=True)
    # a second lever on a ("a" names the same value as "A"): same context, so each predicts the other
    again = [line.replace("A,", "a,", 1) for line in lines if line.startswith("A,")]
    (tmp_path / "twice.csv").write_text("".join(lines + again))
    doc = evaluate_interventions(
        read_score_matrix(tmp_path / "twice.csv"), _bundle(np.eye(5)), random_graphs=0, bootstraps=0
    )
    assert doc["interventions"] == 6
    assert doc["predictors"]["same_target_levers"]["auroc"] > doc["predictors"]["no_graph"]["auroc"]


def test_an_empty_graph_predicts_at_chance(tmp_path: Path) -> None:
    matrix = read_score_matrix(_paper_csv(tmp_path / "test.csv"))
    doc = evaluate_interventions(matrix, _bundle(np.eye(5)), random_graphs=0, bootstraps=0)
    assert doc["predictors"]["graph"]["auroc"] == pytest.approx(0.5)


def test_a_matrix_without_unsteered_rows_or_values_is_a_clear_error(tmp_path: Path) -> None:
    path = _paper_csv(tmp_path / "test.csv")
    lines = path.read_text().splitlines(keepends=True)
    (tmp_path / "steered.csv").write_text(lines[0] + "".join(lines[9:]))
    with pytest.raises(ConfigError, match="no intervention has a target and two personas"):
        evaluate_interventions(read_score_matrix(tmp_path / "steered.csv"), _bundle(TRUE))
    other = ValueGraph(("a", "b", "zeta"), ())
    bundle = Bundle(
        {"model": {"name": "toy"}},
        other,
        EffectModel(("a", "b", "zeta"), np.eye(3), np.zeros((0, 3, 3))),
        np.eye(3),
        np.eye(3),
    )
    with pytest.raises(ConfigError, match=r"lacks the value\(s\) zeta"):
        evaluate_interventions(read_score_matrix(path), bundle)


def test_graph_evaluate_command_prints_the_table(tmp_path: Path) -> None:
    from causalguard.bundle.format import load_bundle, shipped_bundle_dir
    from causalguard.cli import app

    shipped = load_bundle(shipped_bundle_dir("smollm2-135m-instruct"))
    nodes = list(shipped.effects.nodes)
    rng = np.random.default_rng(1)
    path = tmp_path / "test.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["steer_dim", "player_name", *nodes])
        base = rng.normal(0, 0.1, size=(4, len(nodes)))
        for p in range(4):
            writer.writerow(["", f"p{p}", *base[p]])
        for name in nodes[:3]:
            for p in range(4):
                writer.writerow([name, f"p{p}", *(base[p] + rng.normal(0, 0.05, size=len(nodes)))])
    result = CliRunner().invoke(
        app,
        [
            "graph",
            "evaluate",
            str(shipped.path),
            "--test",
            str(path),
            "--random-graphs",
            "3",
            "--bootstraps",
            "50",
            "--out",
            str(tmp_path / "e.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "3 interventions" in result.output and "| graph |" in result.output and "paper's statistic" in result.output
    assert (tmp_path / "e.json").exists()
    _ = save_bundle  # the shipped bundle is read, never written


def test_leave_one_lever_out_rediscovers_the_chain_without_each_levers_rows(tmp_path: Path) -> None:
    from causalguard.graphs.causal.discovery import PCSettings
    from causalguard.graphs.causal.leave_one_out import learning_curve, leave_one_lever_out

    rng = np.random.default_rng(3)
    noise = rng.normal(0, 1, size=(200, 5))
    observational = noise @ TRUE  # a -> b -> c, d and e alone
    survey = tmp_path / "survey.csv"
    with survey.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["condition", "role_kind", "steering", *NODES])
        for k, row in enumerate(observational):
            writer.writerow([f"persona:{k:03d}", "persona", "none", *row])
    test = read_score_matrix(_paper_csv(tmp_path / "test.csv", personas=12))
    doc = leave_one_lever_out(
        read_score_matrix(survey), test, _bundle(np.eye(5)), PCSettings(), random_graphs=5, bootstraps=100
    )
    # the bundle's own (empty) graph is not used: each lever is predicted by a graph found without it
    assert doc["training_rows"] == 200 + test.shape[0] and doc["edges_per_graph"] >= 2
    assert doc["predictors"]["graph"]["auroc"] >= 0.8 > doc["predictors"]["no_graph"]["auroc"]
    curve = learning_curve(read_score_matrix(survey), test, _bundle(np.eye(5)), PCSettings(), [0.2, 1.0], repeats=2)
    assert [point["repeats"] for point in curve] == [2, 1] and curve[0]["training_rows"] < curve[1]["training_rows"]


def _survey_csv(path: Path, rows: int = 200, seed: int = 3) -> Path:
    """Observational rows of the true system: a -> b -> c, d and e alone."""
    observational = np.random.default_rng(seed).normal(0, 1, size=(rows, 5)) @ TRUE
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["condition", "role_kind", "steering", *NODES])
        for k, row in enumerate(observational):
            writer.writerow([f"persona:{k:03d}", "persona", "none", *row])
    return path


def test_joint_matrix_groups_interventions_into_source_context_columns(tmp_path: Path) -> None:
    from causalguard.graphs.causal.contexts import joint_matrix

    survey = read_score_matrix(_survey_csv(tmp_path / "survey.csv", rows=20))
    test = read_score_matrix(_paper_csv(tmp_path / "test.csv", personas=4))
    joint = joint_matrix(survey, test, list(NODES), None)
    assert joint.rows == 20 + 4 + 5 * 4 and joint.contexts == tuple(f"do:{v}" for v in NODES)
    assert joint.indicators[:24].sum() == 0 and (joint.indicators[24:].sum(axis=1) == 1).all()
    data, names, contexts = joint.data(joint.without("A"))
    assert "do:a" not in contexts and data.shape == (joint.rows - 4, 5 + 4) and names[5:] == list(contexts)
    assert len(joint.unsteered()) == 24


def test_stability_selection_ships_frequent_edges_and_leaves_split_orientations_undirected() -> None:
    from causalguard.graphs.causal.bootstrap import stable_graph

    def sample(*edges: tuple[str, str, str]) -> ValueGraph:
        return ValueGraph(NODES, tuple(make_edge(a, b, kind) for a, b, kind in edges))  # type: ignore[arg-type]

    samples = [sample(("a", "b", "directed"), ("c", "d", "directed"), ("a", "e", "directed"))] * 6 + [
        sample(("a", "b", "directed"), ("d", "c", "directed"))
    ] * 4
    graph = stable_graph(NODES, samples, threshold=0.7)
    ab, cd = graph.edge("a", "b"), graph.edge("c", "d")
    assert ab is not None and (ab.source, ab.target, ab.kind, ab.stability) == ("a", "b", "directed", 1.0)
    assert cd is not None and cd.kind == "directed" and cd.source == "c"  # 6 of 10 agree: majority
    assert graph.edge("a", "e") is None  # in 6 of 10 graphs, under the 0.7 threshold
    split = stable_graph(NODES, [sample(("c", "d", "directed"))] * 5 + [sample(("d", "c", "directed"))] * 5, 0.5)
    edge = split.edge("c", "d")
    assert edge is not None and edge.kind == "undirected" and edge.orientation == {"-->": 0.5, "<--": 0.5}


def test_a_bundle_built_with_interventions_recovers_the_chain_and_scores_held_out_levers(tmp_path: Path) -> None:
    from causalguard.graphs.causal.build import BuildSettings, build_bundle

    survey = read_score_matrix(_survey_csv(tmp_path / "survey.csv"))
    steered = read_score_matrix(_paper_csv(tmp_path / "test.csv", personas=12, push=2.0))
    settings = BuildSettings(bootstrap=12, workers=1, random_graphs=3, permutations=99)
    bundle = build_bundle(survey, settings, interventions=steered)
    skeleton = {frozenset(p) for p in bundle.graph.skeleton()}
    assert {frozenset(("a", "b")), frozenset(("b", "c"))} <= skeleton
    # the interventions orient what observational rows cannot: do(a) -> a --- b makes a -> b
    ab = bundle.graph.edge("a", "b")
    assert ab is not None and (ab.kind, ab.source) == ("directed", "a")
    assert all(e.stability is not None and e.stability >= 0.5 for e in bundle.graph.edges)
    # only values in the shipped graph; the context columns are described in the discovery record
    assert set(bundle.graph.nodes) == set(NODES) and bundle.effects.total.shape == (5, 5)
    steer = bundle.doc["discovery"]["interventions"]
    assert steer["rows"] == steered.shape[0] and "do:a" in steer["contexts"] and "a" in steer["context_edges"]["do:a"]
    # total effect of a on c, fitted with the contexts as parents: the true 0.64, roughly
    assert bundle.effects.total[0, 2] == pytest.approx(0.64, abs=0.15)
    lolo = bundle.doc["evaluation"]["leave_one_lever_out"]
    assert lolo["interventions"] == 5 and lolo["predictors"]["graph"]["auroc"] >= 0.8
    assert lolo["predictors"]["graph"]["auroc"] > lolo["predictors"]["no_graph"]["auroc"]


def test_graph_build_command_takes_interventions_and_shows_the_held_out_levers(tmp_path: Path) -> None:
    from causalguard.cli import app

    survey = _survey_csv(tmp_path / "survey.csv")
    steered = _paper_csv(tmp_path / "test.csv", personas=12, push=2.0)
    result = CliRunner().invoke(
        app,
        [
            "graph",
            "build",
            str(survey),
            "--out",
            str(tmp_path / "bundle"),
            "--interventions",
            str(steered),
            "--bootstrap",
            "8",
            "--workers",
            "1",
            "--stability",
            "0.6",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "adjacency in >= 60% of 8 bootstrap graphs" in result.output
    assert "interventional rows: 72 (+ 200 survey rows), 5 context columns as sources only" in result.output
    assert "leave one lever out" in result.output and "| graph |" in result.output
    shown = CliRunner().invoke(app, ["graph", "show", str(tmp_path / "bundle")])
    assert shown.exit_code == 0 and "leave one lever out" in shown.output


def test_auroc_by_ranks_matches_counting_pairs_with_ties() -> None:
    from causalguard.graphs.causal.evaluate import auroc

    rng = np.random.default_rng(5)
    scores = list(np.round(rng.random(60), 1))  # many ties
    labels = list(rng.random(60) < 0.4)
    pos = [s for s, lab in zip(scores, labels, strict=True) if lab]
    neg = [s for s, lab in zip(scores, labels, strict=True) if not lab]
    counted = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert auroc(scores, labels) == pytest.approx(counted)
    assert auroc([1.0, 2.0], [True, True]) is None


@pytest.mark.parametrize(("model", "levers"), [("smollm2-135m-instruct", 78), ("gemma3-270m", 20)])
def test_the_shipped_bundle_ships_the_rows_it_was_built_from(model: str, levers: int) -> None:
    from causalguard.bundle.format import load_bundle, shipped_bundle_dir
    from causalguard.graphs.causal.contexts import joint_matrix

    bundle = load_bundle(shipped_bundle_dir(model))
    assert bundle.path is not None
    survey = read_score_matrix(bundle.path / "data" / "survey.csv")
    steered = read_score_matrix(bundle.path / "data" / "interventions.csv")
    record = bundle.doc["discovery"]["interventions"]
    assert survey.shape[0] + steered.shape[0] == bundle.doc["survey"]["rows"] and steered.shape[0] == record["rows"]
    joint = joint_matrix(survey, steered, list(bundle.effects.nodes), bundle.catalog)
    assert list(joint.contexts) == record["contexts"]
    lolo = bundle.doc["evaluation"]["leave_one_lever_out"]
    assert lolo["training_rows"] == joint.rows and lolo["interventions"] == levers


def test_graph_build_refuses_lever_rows_it_cannot_map_to_targets(tmp_path: Path) -> None:
    from causalguard.cli import app

    survey = _survey_csv(tmp_path / "survey.csv", rows=30)
    steered = tmp_path / "levers.csv"  # our format: rows name catalog levers, not values
    values = np.random.default_rng(0).normal(size=(12, 5))
    steered.write_text(
        "condition,steering,a,b,c,d,e\n"
        + "".join(
            f"p{k // 2},{'none' if k % 2 == 0 else 'role:a:+:reply'},{','.join(map(str, row))}\n"
            for k, row in enumerate(values)
        )
    )
    result = CliRunner().invoke(
        app,
        [
            "graph",
            "build",
            str(survey),
            "--out",
            str(tmp_path / "bundle"),
            "--interventions",
            str(steered),
            "--bootstrap",
            "0",
        ],
    )
    text = " ".join(result.output.replace("│", " ").split())  # unwrapped from the error box
    assert result.exit_code == 2 and "--catalog" in text and "to map them to their target values" in text
    assert not (tmp_path / "bundle").exists()


def test_the_split_half_reproducibility_tells_reproducible_side_effects_from_noise() -> None:
    from causalguard.graphs.causal.interventions import Intervention, split_half_reproducibility

    rng = np.random.default_rng(2)

    def lever(k: int, effect: np.ndarray) -> Intervention:
        changes = effect + rng.normal(0, 0.1, size=(12, 5))  # 12 personas
        mean = changes.mean(axis=0)
        return Intervention(f"lever{k}", NODES[k % 5], 12, mean, np.abs(mean) > 0.1, changes)

    fat_hands = [lever(k, rng.choice([0.0, 0.5], size=5) * rng.choice([-1, 1], size=5)) for k in range(10)]
    split = split_half_reproducibility(fat_hands, list(NODES), splits=5)
    assert split is not None and split["auroc"] > 0.9 and split["side_effect_correlation"] > 0.9
    noise = [lever(k, np.zeros(5)) for k in range(10)]
    split = split_half_reproducibility(noise, list(NODES), splits=5)
    assert split is not None and abs(split["auroc"] - 0.5) < 0.2 and abs(split["side_effect_correlation"]) < 0.3
    assert split_half_reproducibility([lever(0, np.zeros(5))][:0], list(NODES)) is None


def test_catalog_effects_predict_levers_that_act_as_the_catalog_measured(tmp_path: Path) -> None:
    from tests.guard_fakes import DIMS, fake_bundle

    bundle = fake_bundle()
    assert bundle.catalog is not None
    rng = np.random.default_rng(4)
    path = tmp_path / "levers.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["condition", "steering", *DIMS])
        for p in range(8):
            base = rng.normal(0, 1, size=3)
            writer.writerow([f"persona:{p:03d}", "none", *base])
            for lever in bundle.catalog.levers:  # each lever shifts each persona by its catalog effects, plus noise
                shift = np.array([lever.effects[d].mean for d in DIMS])
                writer.writerow([f"persona:{p:03d}|{lever.id}", lever.id, *(base + shift + rng.normal(0, 0.01, 3))])
    doc = evaluate_interventions(read_score_matrix(path), bundle, random_graphs=0, bootstraps=0)
    assert doc["interventions"] == 5
    table = doc["predictors"]
    assert table["catalog_effects"]["auroc"] > 0.8 and table["catalog_effects"]["mae"] < 0.02
    assert table["catalog_effects"]["auroc"] > table["no_graph"]["auroc"]
