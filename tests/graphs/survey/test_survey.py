"""The survey on the real embedded model: outputs, resume after a kill, settings guard, CLI."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from causalguard import ConfigError, load_inventory
from causalguard.cli import app
from causalguard.graphs.survey import SurveySettings, build_conditions, load_survey, run_survey
from causalguard.graphs.survey.conditions import standard_roles
from causalguard.graphs.survey.store import AnswerStore
from causalguard.models.loaded import LoadedModel
from causalguard.scoring.base import ItemAnswer

pytestmark = pytest.mark.slow
DIMS = ["power", "benevolence"]


class Killed(Exception):
    pass


def _conditions():  # type: ignore[no-untyped-def]
    inv = load_inventory(dimensions=DIMS)
    return inv, build_conditions(standard_roles(inv, personas=2, include_anchors=True))


def test_survey_writes_outputs_and_quality_report(lm: LoadedModel, tmp_path: Path) -> None:
    inv, conditions = _conditions()
    result = run_survey(
        lm, inv, conditions, SurveySettings(method="yesno", agreement_sample=6), tmp_path, progress=False
    )
    for name in ("answers.csv", "conditions.csv", "scores.csv", "run.json", "quality.json", "quality.md"):
        assert (tmp_path / name).exists(), name
    assert result.matrix().shape == (len(conditions), 2)
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["status"] == "complete" and meta["model"]["fingerprint"] == lm.fingerprint
    assert meta["inventory"]["hash"] == inv.content_hash()
    quality = json.loads((tmp_path / "quality.json").read_text())
    assert set(quality["reliability"]) == set(DIMS)
    assert 0 < quality["yes_no_mass"]["mean"] <= 1
    assert quality["agreement_with_generation"]["sample"] == 6
    assert set(quality["value_roles"]) == set(DIMS)
    with (tmp_path / "scores.csv").open() as handle:
        header = next(csv.reader(handle))
    assert header == ["condition", "role_kind", "steering", *DIMS]
    loaded = load_survey(tmp_path)
    assert (loaded.matrix() == result.matrix()).all()


def test_killed_survey_resumes_to_the_identical_matrix(lm: LoadedModel, tmp_path: Path) -> None:
    inv, conditions = _conditions()
    settings = SurveySettings(method="statement", batch_size=8)
    straight = run_survey(lm, inv, conditions, settings, tmp_path / "straight", progress=False)

    done: list[str] = []

    def kill_after_three(condition_id: str) -> None:
        done.append(condition_id)
        if len(done) == 3:
            raise Killed

    with pytest.raises(Killed):
        run_survey(
            lm, inv, conditions, settings, tmp_path / "resumed", progress=False, on_condition_done=kill_after_three
        )
    # A kill mid-write leaves a partial line: it must be dropped, not counted.
    with (tmp_path / "resumed" / "answers.csv").open("a") as handle:
        handle.write("value:power:inclined,po01,power,1,0.5")
    recomputed: list[str] = []
    resumed = run_survey(
        lm, inv, conditions, settings, tmp_path / "resumed", progress=False, on_condition_done=recomputed.append
    )
    assert len(recomputed) == len(conditions) - 3
    assert not set(recomputed) & set(done)
    assert (resumed.matrix() == straight.matrix()).all()
    assert (tmp_path / "resumed" / "scores.csv").read_text() == (tmp_path / "straight" / "scores.csv").read_text()


def test_resume_with_other_settings_is_refused(lm: LoadedModel, tmp_path: Path) -> None:
    inv, conditions = _conditions()
    run_survey(lm, inv, conditions[:2], SurveySettings(method="statement"), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="different model, inventory, roles or settings"):
        run_survey(lm, inv, conditions[:2], SurveySettings(method="yesno"), tmp_path, progress=False)
    redone = run_survey(lm, inv, conditions[:2], SurveySettings(method="yesno"), tmp_path, progress=False, restart=True)
    assert redone.metadata["settings"]["method"] == "yesno"


def test_store_drops_partial_conditions(tmp_path: Path) -> None:
    store = AnswerStore(tmp_path / "answers.csv")
    full = [ItemAnswer("a", "d", 1, 0.1, 0.1), ItemAnswer("b", "d", -1, 1 / 3, -1 / 3)]
    store.append("c1", full)
    store.append("c2", full[:1])
    loaded = store.load(expected_items=2)
    assert list(loaded) == ["c1"]
    assert loaded["c1"][1].raw == 1 / 3  # floats round-trip exactly
    assert "c2" not in (tmp_path / "answers.csv").read_text()


def test_cli_survey_runs_and_reports(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "survey",
            "--out",
            str(tmp_path / "s"),
            "--dimensions",
            "power,benevolence",
            "--personas",
            "1",
            "--no-anchors",
            "--method",
            "statement",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Survey quality" in result.output
    assert (tmp_path / "s" / "scores.csv").exists()


def test_cli_reports_config_errors_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "inv.yaml"
    bad.write_text("name: x\ndimensions: []\n")
    proc = subprocess.run(
        [sys.executable, "-m", "causalguard.cli", "survey", "--out", str(tmp_path / "o"), "--inventory", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert f"error: 1 problem in {bad}" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.heavy  # about 30 s on 2 cores; CI runs it (.ci/run)
def test_sigkilled_cli_run_resumes(tmp_path: Path) -> None:
    """A real process killed with SIGKILL mid-run resumes to the same scores as a clean run."""
    out = tmp_path / "killed"
    args = [
        sys.executable,
        "-m",
        "causalguard.cli",
        "survey",
        "--out",
        str(out),
        "--dimensions",
        "power",
        "--personas",
        "6",
        "--no-anchors",
        "--method",
        "statement",
        "--quiet",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    answers = out / "answers.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not answers.exists() or answers.read_text().count("\n") < 40):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    subprocess.run(args, check=True, capture_output=True, timeout=300)
    clean = tmp_path / "clean"
    subprocess.run([*args[:5], str(clean), *args[6:]], check=True, capture_output=True, timeout=300)
    assert (out / "scores.csv").read_text() == (clean / "scores.csv").read_text()


def test_valuebench_csv_runs_through_the_survey(lm: LoadedModel, tmp_path: Path) -> None:
    csv_path = tmp_path / "vb.csv"
    csv_path.write_text(
        "questionnaire,item,value,agreement,question\n"
        "PVQ,I like to help others.,Benevolence,1,Do you like to help others?\n"
        "PVQ,I ignore other people's problems.,Benevolence,-1,Do you ignore other people's problems?\n"
        "PVQ,I want to be in charge.,Power,1,Do you want to be in charge?\n"
        "PVQ,I avoid leading others.,Power,-1,Do you avoid leading others?\n"
    )
    inv = load_inventory(csv_path)
    conditions = build_conditions(standard_roles(inv, personas=3, include_anchors=False))
    result = run_survey(lm, inv, conditions, SurveySettings(method="yesno"), tmp_path / "out", progress=False)
    assert result.dimensions == ["benevolence", "power"]
    assert result.matrix().shape == (1 + 3 + 4, 2)
    assert json.loads((tmp_path / "out" / "run.json").read_text())["inventory"]["name"] == "valuebench-vb"


def test_store_resume_is_exact_after_a_cut_at_every_byte_of_its_last_line(tmp_path: Path) -> None:
    """A cut inside a number still parses as a number (-0.2425 -> -0.24): the row checksum catches it."""
    full = [ItemAnswer("a", "d", 1, 0.1, -0.2425113320350647), ItemAnswer("b", "d", -1, 1 / 3, -1 / 3, 0.9, "Yes")]
    reference = AnswerStore(tmp_path / "ref.csv")
    reference.append("c1", full)
    reference.append("c2", full)
    content = (tmp_path / "ref.csv").read_bytes()
    head, last = content[: content.rstrip(b"\n").rfind(b"\n") + 1], content[content.rstrip(b"\n").rfind(b"\n") + 1 :]
    for cut in range(len(last)):
        path = tmp_path / f"cut{cut}.csv"
        path.write_bytes(head + last[:cut])
        loaded = AnswerStore(path).load(expected_items=2)
        # c2 lost part of its last row: recomputed, never taken as it is (only the newline lost: kept whole)
        assert list(loaded) == (["c1", "c2"] if cut == len(last) - 1 else ["c1"]), cut
        assert all(answers == full for answers in loaded.values())
        assert path.read_bytes().endswith(b"\n")  # the next append starts on its own line
    assert AnswerStore(tmp_path / "ref.csv").load(expected_items=2) == {"c1": full, "c2": full}


def test_store_rejects_damaged_rows_and_old_formats(tmp_path: Path) -> None:
    store = AnswerStore(tmp_path / "answers.csv")
    store.append("c1", [ItemAnswer("a", "d", 1, 0.1, 0.1)])
    text = (tmp_path / "answers.csv").read_text()
    (tmp_path / "answers.csv").write_text(text.replace("0.1,0.1", "0.1,0.7"))  # a changed score
    assert store.load(expected_items=1) == {}
    (tmp_path / "answers.csv").write_text(
        "condition,item_id,dimension,polarity,raw,score,yes_no_mass,text\nc1,a,d,1,0.1,0.1,,\n"
    )  # the previous format, without checksums
    assert store.load(expected_items=1) == {}
    store.append("c1", [ItemAnswer("a", "d", 1, 0.1, float("nan"))])
    assert store.load(expected_items=1) == {}  # a non-finite score is never resumed from
