"""The paper's Table 2 statistic (change rates of a target's descendants vs the other values), on hand-made
matrices and on a slice of the paper's own Gemma-2B-IT data (tests/data/paper, MIT)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from causalguard.bundle.graph import Edge, ValueGraph
from causalguard.cli import app
from causalguard.errors import ConfigError
from causalguard.graphs.causal.change_rates import (
    ChangeRule,
    change_rate_table,
    compare_with_paper,
    intervention_label,
    largest_change_targets,
    read_paper_table,
    rows_steered_by,
)
from causalguard.graphs.causal.matrix import ScoreMatrix, read_score_matrix
from tests.repo_paths import DATA

PAPER = DATA / "paper"
SLICE_FEATURES = "14351,1025,2965"


def _matrix(rows: list[tuple[str, str, list[float]]], columns: list[str]) -> ScoreMatrix:
    """Paper-format rows: (steer_dim, player_name, scores)."""
    return ScoreMatrix(
        columns,
        np.array([r[2] for r in rows], dtype=float),
        [f"{r[0]}/{r[1]}" for r in rows],
        [{"steer_dim": r[0], "player_name": r[1]} for r in rows],
    )


def _chain() -> ValueGraph:
    """a -> b -> c, d on its own."""
    return ValueGraph(("a", "b", "c", "d"), (Edge("a", "b", "directed"), Edge("b", "c", "directed")))


def _steered() -> ScoreMatrix:
    # feature 7 moves a, b (its descendant) and d (not one); feature 9 moves only c; persona p1 and p2
    base = [0.0, 0.0, 0.0, 0.0]
    return _matrix(
        [
            ("", "p1", base),
            ("", "p2", base),
            ("7.0", "p1", [0.5, 0.4, 0.0, 0.3]),
            ("7.0", "p2", [0.5, 0.2, 0.0, 0.3]),
            ("9.0", "p1", [0.0, 0.0, -0.2, 0.0]),
            ("9.0", "p2", [0.0, 0.0, -0.4, 0.0]),
            ("b", "p1", [0.0, 0.5, 0.5, 0.0]),
            ("b", "p2", [0.0, 0.5, 0.5, 0.0]),
        ],
        ["a", "b", "c", "d"],
    )


def test_every_changed_value_is_a_target_of_a_feature() -> None:
    table = change_rate_table(_steered(), _chain(), ChangeRule("threshold", threshold=0.1))
    rows = table["per_value"]
    # a (changed by 7): descendants b, c -> b changed, c did not: 1/2; others: d changed: 1/1
    assert rows["a"]["expected"] == pytest.approx(0.5) and rows["a"]["unexpected"] == pytest.approx(1.0)
    # b: changed by 7 (descendant c unchanged, others a, d changed) and by the role 'b' (c changed; a, d not)
    assert rows["b"]["interventions"] == 2
    assert rows["b"]["expected"] == pytest.approx(0.5) and rows["b"]["unexpected"] == pytest.approx(0.5)
    # c has no descendants: no expected rate; only 9 targets it (the role 'b' names b), and 9 moved nothing else
    assert rows["c"]["expected"] is None and rows["c"]["unexpected"] == 0.0 and rows["c"]["interventions"] == 1
    assert table["mean_expected"] == pytest.approx(0.5)


def test_a_target_map_and_a_stricter_rule_change_the_targets() -> None:
    mapped = change_rate_table(
        _steered(), _chain(), ChangeRule("threshold", threshold=0.1), target_map={"7": "d", "9": "c"}
    )
    assert mapped["per_value"]["a"]["interventions"] == 0  # 7 now targets d only
    assert mapped["per_value"]["d"]["interventions"] == 1
    strict = change_rate_table(_steered(), _chain(), ChangeRule("threshold", threshold=0.45))
    assert strict["per_value"]["a"]["interventions"] == 1 and strict["per_value"]["a"]["expected"] == 0.0
    tested = change_rate_table(_steered(), _chain(), ChangeRule("t_test", alpha=0.05))
    assert tested["per_value"]["d"]["interventions"] == 1  # d's change is the same for both personas


def test_largest_change_targets_read_features_as_integers() -> None:
    assert largest_change_targets(_steered()) == {"7": "a", "9": "c", "b": "b"}
    assert intervention_label("14351.0") == "14351" and intervention_label(" none ") == "none"


def test_paper_table_and_comparison(tmp_path: Path) -> None:
    paper = read_paper_table(PAPER / "table2_gemma.csv")
    assert paper["Achievement"]["expected"] is None
    assert paper["Achievement"]["unexpected"] == pytest.approx(11 / 16)
    mine = {
        "per_value": {v: {"expected": r["expected"], "unexpected": r["unexpected"]} for v, r in paper.items()},
        "mean_expected": 0.568,
        "mean_unexpected": 0.506,
    }
    same = compare_with_paper(mine, paper)
    assert same["mean_abs_difference"] == 0.0 and same["empty_cells_agree"] == same["cells"] == 34
    bad = tmp_path / "table2.csv"
    text = (PAPER / "table2_gemma.csv").read_text().splitlines()
    text[5] = text[5].replace("0.5,", "1.5,", 1)  # sae_ours_expected: a rate above 1
    bad.write_text("\n".join(text) + "\n")
    with pytest.raises(ConfigError, match=r"line 6.*mean_scorechange__sae_ours_expected|not a rate"):
        read_paper_table(bad)


def test_row_filter_names_an_unknown_feature() -> None:
    matrix = read_score_matrix(PAPER / "gemma_test_slice.csv")
    kept = rows_steered_by(matrix, ["1025"])
    assert kept.shape[0] == 52  # 26 unsteered + 26 steered by 1025
    with pytest.raises(ConfigError, match="99999"):
        rows_steered_by(matrix, ["1025", "99999"])


def test_paper_slice_end_to_end(tmp_path: Path) -> None:
    """Graph on the slice's training rows (PC, no bootstrap), Table 2 statistic and predictors on its test
    rows: a golden result for the paper-format path."""
    runner = CliRunner()
    bundle = tmp_path / "gemma"
    built = runner.invoke(
        app,
        [
            "graph",
            "build",
            str(PAPER / "gemma_train_slice.csv"),
            "--out",
            str(bundle),
            "--bootstrap",
            "0",
            "--steering-only",
            SLICE_FEATURES,
        ],
    )
    assert built.exit_code == 0, built.output
    assert "404 rows" in built.output and "26 edges" in built.output
    out = tmp_path / "rates.json"
    rates = runner.invoke(
        app,
        [
            "graph",
            "change-rates",
            str(bundle),
            "--test",
            str(PAPER / "gemma_test_slice.csv"),
            "--changed-above",
            "0.075",
            "--paper-table",
            str(PAPER / "table2_gemma.csv"),
            "--out",
            str(out),
        ],
    )
    assert rates.exit_code == 0, rates.output
    doc = json.loads(out.read_text())
    assert doc["table"]["interventions"] == 3
    assert doc["table"]["mean_expected"] == pytest.approx(0.129, abs=5e-4)
    assert doc["table"]["mean_unexpected"] == pytest.approx(0.222, abs=5e-4)
    assert doc["paper"]["means"]["expected"]["paper"] == pytest.approx(0.568, abs=5e-4)
    evaluated = runner.invoke(
        app,
        [
            "graph",
            "evaluate",
            str(bundle),
            "--test",
            str(PAPER / "gemma_test_slice.csv"),
            "--targets-from",
            str(PAPER / "gemma_train_slice.csv"),
            "--bootstraps",
            "50",
            "--random-graphs",
            "3",
            "--out",
            str(tmp_path / "eval.json"),
        ],
    )
    assert evaluated.exit_code == 0, evaluated.output
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["interventions"] == 3 and not result["skipped"]
    without = runner.invoke(app, ["graph", "evaluate", str(bundle), "--test", str(PAPER / "gemma_test_slice.csv")])
    assert without.exit_code != 0 and "--targets-from" in str(without.exception)  # SAE features name no value


def test_change_rate_options_are_checked(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "graph",
            "change-rates",
            str(tmp_path),
            "--test",
            str(PAPER / "gemma_test_slice.csv"),
            "--changed-above",
            "0.1",
            "--changed-p",
            "0.05",
        ],
    )
    assert result.exit_code != 0 and "not both" in result.output
