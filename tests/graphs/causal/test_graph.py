"""Causal value graphs: golden PC output, recovery of a known SEM, matrices, bundles, comparison, CLI."""

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from causalguard import ConfigError
from causalguard.bundle import BundleMismatchError, load_bundle, save_bundle
from causalguard.bundle.effects import EffectModel
from causalguard.bundle.graph import ValueGraph, make_edge
from causalguard.bundle.integrity import seal_bundle
from causalguard.cli import app
from causalguard.graphs.causal.build import BuildSettings, build_bundle
from causalguard.graphs.causal.discovery import Knowledge, PCSettings, decode, run_pc
from causalguard.graphs.causal.evaluate import auroc, evaluate_held_out
from causalguard.graphs.causal.matrix import ScoreMatrix, clean, read_score_matrix
from causalguard.graphs.causal.reference import (
    circumplex_graph,
    circumplex_pattern,
    compare_with_reference,
    diff_graphs,
    mantel,
    read_reference,
)
from causalguard.graphs.causal.sem import class_total_effects
from causalguard.models.loaded import LoadedModel
from tests.repo_paths import DATA

SCHWARTZ = [
    "self_direction",
    "stimulation",
    "hedonism",
    "achievement",
    "power",
    "security",
    "conformity",
    "tradition",
    "benevolence",
    "universalism",
]


def test_golden_matrix_gives_the_pinned_graph() -> None:
    matrix = read_score_matrix(DATA / "golden_matrix.csv")
    expected = ValueGraph.from_json(json.loads((DATA / "golden_graph.json").read_text()))
    assert run_pc(matrix.values, matrix.columns) == expected
    # and the pinned graph is the true CPDAG of the generating SEM (a -> c <- b, c -> d -> e, f alone)
    assert sorted(str(e) for e in expected.edges) == ["a --> c", "b --> c", "c --> d", "d --> e"]


def _sem(n: int, seed: int) -> tuple[np.ndarray, dict[tuple[str, str], float]]:
    """a -> c <- b, c -> d -> e, and the true total effects."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    c = 0.8 * a + 0.7 * b + rng.normal(size=n)
    d = 0.9 * c + rng.normal(size=n)
    e = 0.6 * d + rng.normal(size=n)
    truth = {
        ("a", "c"): 0.8,
        ("a", "d"): 0.72,
        ("a", "e"): 0.432,
        ("b", "e"): 0.7 * 0.9 * 0.6,
        ("c", "e"): 0.54,
        ("e", "a"): 0.0,
        ("d", "b"): 0.0,
    }
    return np.c_[a, b, c, d, e], truth


def test_discovery_recovers_a_known_sem_and_predictions_match_its_total_effects() -> None:
    data, truth = _sem(5000, seed=1)
    nodes = ["a", "b", "c", "d", "e"]
    graph = run_pc(data, nodes, PCSettings(alpha=0.01))  # seeded data; alpha 0.01 avoids chance adjacencies
    assert sorted(str(e) for e in graph.edges) == ["a --> c", "b --> c", "c --> d", "d --> e"]
    effects = class_total_effects(graph, data)
    assert effects.dags == 1
    model = EffectModel(tuple(nodes), effects.mean, np.zeros((0, 5, 5)))
    for (source, target), value in truth.items():
        predicted = {p.value: p.change for p in model.predict_do(source, 1.0)}
        assert predicted[target] == pytest.approx(value, abs=0.05), (source, target)


def test_undirected_chain_keeps_its_equivalence_class() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=3000)
    y = 0.8 * x + rng.normal(size=3000)
    z = 0.8 * y + rng.normal(size=3000)
    graph = run_pc(np.c_[x, y, z], ["x", "y", "z"])
    assert {e.kind for e in graph.edges} == {"undirected"}
    dags = graph.consistent_dags()
    assert len(dags) == 3  # x->y->z, z->y->x, x<-y->z; never the collider x->y<-z
    assert not any(set(d.predecessors("y")) == {"x", "z"} for d in dags)
    assert graph.descendants("x") == {"y", "z"}  # the paper's reading: undirected = two arrows


def test_directed_cycles_still_give_one_dag_for_effects() -> None:
    cyclic = ValueGraph(
        ("a", "b", "c", "d"),
        (
            make_edge("a", "b", "directed"),
            make_edge("b", "c", "directed"),
            make_edge("c", "a", "directed"),
            make_edge("c", "d", "undirected"),
        ),
    )
    [dag] = cyclic.consistent_dags()
    import networkx as nx

    assert nx.is_directed_acyclic_graph(dag) and dag.number_of_edges() == 4
    data = np.random.default_rng(0).normal(size=(50, 4))
    assert class_total_effects(cyclic, data).dags == 1


def test_background_knowledge_forbids_and_requires() -> None:
    data, _ = _sem(3000, seed=2)
    nodes = ["a", "b", "c", "d", "e"]
    graph = run_pc(data, nodes, PCSettings(knowledge=Knowledge(forbidden=(("c", "d"), ("d", "c")))))
    assert graph.edge("c", "d") is None
    indicator = np.r_[np.zeros(1500), np.ones(1500)]
    shifted = data.copy()
    shifted[:, 0] += 2 * indicator
    settings = PCSettings(knowledge=Knowledge(sources_only=("steer",)))
    graph = run_pc(np.c_[shifted, indicator], [*nodes, "steer"], settings)
    edge = graph.edge("steer", "a")
    assert edge is not None and (edge.source, edge.target) == ("steer", "a")
    assert all(e.target != "steer" for e in graph.edges)
    with pytest.raises(ValueError, match="unknown variables: zz"):
        Knowledge(forbidden=(("a", "zz"),)).check(nodes)


def test_decode_reads_causal_learn_endpoint_marks() -> None:
    matrix = np.array([[0, -1, -1], [1, 0, 1], [-1, 1, 0]])
    graph = decode(matrix, ["x", "y", "z"])
    assert {str(e) for e in graph.edges} == {"x --> y", "x --- z", "y <-> z"}


def _write(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_paper_format_matrix_and_cleaning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    header = ["steer_dim", "player_name", "A", "A:scstd", "B", "B:scstd", "C", "D", "stds", "scstds"]
    rows = []
    for i in range(30):
        a, b = rng.normal(), rng.normal()
        rows.append(["" if i % 2 else "power", f"p{i}", a, 0.1, b, 0.2, 1.0, a, 0.3, 0.4])
    rows[3][4] = ""  # a missing B value
    path = _write(tmp_path / "paper.csv", header, rows)
    with caplog.at_level(logging.WARNING):
        matrix = read_score_matrix(path)
    assert matrix.columns == ["A", "B"]
    assert matrix.shape == (29, 2)
    assert any("C: constant" in d for d in matrix.dropped)
    assert any("D: duplicate of A" in d for d in matrix.dropped)
    assert any("missing values" in d for d in matrix.dropped)
    assert "dropped" in caplog.text
    assert matrix.row_info[0] == {"steer_dim": "power", "player_name": "p0"}


def test_matrix_errors_are_clear(tmp_path: Path) -> None:
    few = ScoreMatrix(["a", "b", "c"], np.random.default_rng(0).normal(size=(6, 3)), [str(i) for i in range(6)])
    with pytest.raises(ConfigError, match="6 rows for 3 variables"):
        clean(few)
    with pytest.raises(ConfigError, match="id column"):
        read_score_matrix(DATA / "golden_matrix.csv", id_columns=["nope"])
    with pytest.raises(ConfigError, match="no score matrix"):
        read_score_matrix(tmp_path)
    one = _write(tmp_path / "one.csv", ["x", "y"], [[i, 1] for i in range(20)])
    with pytest.raises(ConfigError, match="only 1 usable value column"):
        read_score_matrix(one)


def _bundle(tmp_path: Path) -> Path:
    matrix = read_score_matrix(DATA / "golden_matrix.csv")
    bundle = build_bundle(matrix, BuildSettings(bootstrap=10, workers=1, random_graphs=2, permutations=99))
    bundle.doc["model"] = {"name": "synthetic", "fingerprint": "w1:abc"}
    return save_bundle(bundle, tmp_path / "bundle")


def test_bundle_round_trip_stability_and_fingerprint_guard(tmp_path: Path) -> None:
    folder = _bundle(tmp_path)
    for name in ("bundle.json", "effects.safetensors", "graph.graphml", "graph.svg"):
        assert (folder / name).exists()
    loaded = load_bundle(folder, expected_fingerprint="w1:abc")
    assert sorted(str(e).split("  ")[0] for e in loaded.graph.edges) == ["a --> c", "b --> c", "c --> d", "d --> e"]
    assert all(e.stability is not None and 0.5 <= e.stability <= 1 for e in loaded.graph.edges)
    assert loaded.effects.samples.shape == (10, 6, 6)
    band = {p.value: p for p in loaded.effects.predict_do("a", 1.0)}
    assert band["e"].low <= band["e"].change <= band["e"].high
    assert loaded.doc["evaluation"]["applicable"] is False  # no personas or value roles in this matrix
    with pytest.raises(BundleMismatchError, match="built for weights w1:abc"):
        load_bundle(folder, expected_fingerprint="w1:other")
    assert load_bundle(folder, expected_fingerprint="w1:other", force=True).fingerprint == "w1:abc"
    doc = json.loads((folder / "bundle.json").read_text())
    doc["schema"] = "causalguard.bundle/0"
    (folder / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"bundle\.json changed since the bundle was sealed"):
        load_bundle(folder)
    seal_bundle(folder)
    with pytest.raises(ConfigError, match="unsupported bundle schema"):
        load_bundle(folder)


def test_circumplex_comparison_and_diff() -> None:
    ring = circumplex_graph(SCHWARTZ)
    assert len(ring.edges) == 12
    pattern = circumplex_pattern(SCHWARTZ)
    assert pattern is not None and pattern[SCHWARTZ.index("power"), SCHWARTZ.index("universalism")] < -0.9
    report = compare_with_reference(ring, pattern, permutations=199)
    assert report["skeleton"]["precision"] == 1.0 and report["skeleton"]["shd"] == 0
    assert report["circumplex_correlation"]["r"] == pytest.approx(1.0)
    assert report["circumplex_correlation"]["p_value"] < 0.05
    _, p = mantel(np.eye(10) + 0.01, pattern, permutations=199)
    assert p > 0.05
    old = ValueGraph(("a", "b", "c"), (make_edge("a", "b", "directed"), make_edge("b", "c", "undirected")))
    new = ValueGraph(("a", "b", "c"), (make_edge("b", "a", "directed"), make_edge("a", "c", "directed")))
    diff = diff_graphs(old, new)
    assert diff["gained"] == ["a --> c"] and diff["lost"] == ["b --- c"]
    assert diff["reversed"] == ["a --> b  =>  b --> a"]


def test_reference_files(tmp_path: Path) -> None:
    import networkx as nx

    g = nx.Graph([("power", "achievement"), ("power", "security")])
    nx.write_graphml(g, tmp_path / "ref.graphml")
    ref = read_reference(tmp_path / "ref.graphml")
    assert ref.skeleton() == {frozenset(("power", "achievement")), frozenset(("power", "security"))}
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a GraphML or causalguard graph"):
        read_reference(tmp_path / "bad.json")


def test_held_out_evaluation_prefers_the_true_graph() -> None:
    """Personas drawn from an identifiable SEM (x -> y <- v, y -> z; w alone); value roles shift one value.

    The graph knows that shifting y moves z but not x or v; correlation alone cannot tell.
    """
    rng = np.random.default_rng(3)
    nodes = ["x", "v", "y", "z", "w"]

    def draw(shift: dict[str, float]) -> list[float]:
        x = rng.normal() + shift.get("x", 0)
        v = rng.normal() + shift.get("v", 0)
        y = 0.8 * x + 0.8 * v + 0.5 * rng.normal() + shift.get("y", 0)
        z = 0.9 * y + 0.5 * rng.normal() + shift.get("z", 0)
        w = rng.normal() + shift.get("w", 0)
        return [x, v, y, z, w]

    rows, info = [], []
    for i in range(200):
        rows.append(draw({}))
        info.append({"condition": f"persona:{i}", "role_kind": "persona"})
    for node in nodes:
        for name, sign in (("inclined", 1), ("disinclined", -1)):
            rows.append(draw({node: 3 * sign}))
            info.append({"condition": f"value:{node}:{name}", "role_kind": "value_role"})
    matrix = ScoreMatrix(nodes, np.array(rows), [i["condition"] for i in info], info)
    result = evaluate_held_out(matrix, PCSettings(), random_graphs=5)
    table = result["predictors"]
    assert result["applicable"] and result["targets"] == 5 and result["pairs"] == 20
    assert table["graph"]["mae"] < table["no_graph"]["mae"]
    assert table["graph"]["mae"] < table["correlation"]["mae"]
    assert table["graph"]["auroc"] > table["correlation"]["auroc"]
    assert result["paper_statistic"]["descendant"]["rate"] > result["paper_statistic"]["non_descendant"]["rate"]


def test_auroc() -> None:
    assert auroc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    assert auroc([1.0], [True]) is None


def test_cli_graph_commands_on_an_external_csv(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "b"
    result = runner.invoke(
        app,
        ["graph", "build", str(DATA / "golden_matrix.csv"), "--out", str(out), "--bootstrap", "5", "--workers", "1"],
    )
    assert result.exit_code == 0, result.output
    assert "a --> c" in result.output and "bundle written" in result.output
    result = runner.invoke(app, ["graph", "predict", str(out), "--do", "a=1"])
    assert result.exit_code == 0 and "(intervened)" in result.output
    result = runner.invoke(app, ["graph", "predict", str(out), "--do", "aa=1"])
    assert result.exit_code != 0 and "did you mean 'a'" in result.output
    assert runner.invoke(app, ["graph", "show", str(out)]).exit_code == 0
    result = runner.invoke(app, ["graph", "diff", str(out), str(out)])
    assert result.exit_code == 0 and "gained (0)" in result.output
    result = runner.invoke(app, ["graph", "compare", str(out)])  # values a..e: no human reference exists
    assert result.exit_code == 0 and "no reference for this inventory" in result.output
    result = runner.invoke(
        app, ["graph", "build", str(DATA / "golden_matrix.csv"), "--out", str(out), "--forbid", "a-c"]
    )
    assert result.exit_code != 0 and "FROM>TO" in result.output


@pytest.mark.slow
def test_shipped_default_bundle_matches_the_embedded_model(lm: LoadedModel) -> None:
    import causalguard.graphs

    folder = Path(causalguard.graphs.__file__).parent / "smollm2-135m-instruct"
    bundle = load_bundle(folder, expected_fingerprint=lm.fingerprint)
    assert bundle.model_name == "smollm2-135m-instruct"
    assert set(bundle.graph.nodes) == set(SCHWARTZ)
    assert bundle.doc["survey"]["rows"] >= 81 and bundle.doc["evaluation"]["applicable"]
    assert (folder / "MODEL_CARD.md").exists()


@pytest.mark.parametrize("model", ["smollm2-135m-instruct", "gemma3-270m"])
def test_every_shipped_prediction_lies_inside_its_own_band(model: str) -> None:
    from causalguard.bundle.format import shipped_bundle_dir

    effects = load_bundle(shipped_bundle_dir(model)).effects
    for source in effects.nodes:
        for p in effects.predict_do(source, -0.1):
            assert p.low <= p.change <= p.high, (source, p)
    with pytest.raises(ValueError, match="finite"):
        effects.predict_do(effects.nodes[0], float("nan"))


def test_no_human_reference_for_a_non_schwartz_inventory() -> None:
    graph = ValueGraph(("curiosity", "honesty"), ())
    report = compare_with_reference(graph, np.eye(2), permutations=9)
    assert report["reference"] is None and "no reference for this inventory" in report["reason"]


def test_our_fisher_z_gives_causal_learns_p_values_and_graph() -> None:
    from causallearn.utils.cit import CIT

    from causalguard.graphs.causal.discovery import _register_fast_fisherz

    rng = np.random.default_rng(11)
    data = rng.normal(size=(300, 6))
    data[:, 1] += 0.6 * data[:, 0]
    data[:, 2] += 0.5 * data[:, 1] - 0.4 * data[:, 3]
    stock, ours = CIT(data, "fisherz"), CIT(data, _register_fast_fisherz())
    for x, y, given in [(0, 1, ()), (0, 2, (1,)), (2, 0, (3, 1)), (4, 5, (0, 1, 2, 3)), (1, 3, (5, 2))]:
        assert ours(x, y, list(given)) == pytest.approx(stock(x, y, list(given)), rel=1e-6, abs=1e-12)
    nodes = [f"v{k}" for k in range(6)]
    with_stock = run_pc_with_test(data, nodes, "fisherz")
    assert {(e.source, e.target, e.kind) for e in run_pc(data, nodes).edges} == with_stock


def run_pc_with_test(data: np.ndarray, nodes: list[str], test: str) -> set[tuple[str, str, str]]:
    from causallearn.search.ConstraintBased.PC import pc

    result = pc(data, 0.05, test, stable=True, show_progress=False, node_names=nodes)
    return {(e.source, e.target, e.kind) for e in decode(result.G.graph, nodes).edges}
