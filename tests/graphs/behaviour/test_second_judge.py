"""Judges that selected no lever: a probe or contrast judge scoring one target, kept beside the run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from causalguard.errors import ConfigError
from causalguard.graphs.behaviour.second_judge import OtherJudge, load_other_judge, opposes, sees
from causalguard.judging.judge import ContrastJudge, ProbeJudge, ProbeWeights, ValueDefinition
from causalguard.models.loaded import LoadedModel

DIMS = ("power", "benevolence")
TEXTS = ["Take charge of the meeting.", "Help your neighbour carry the bags.", "Rest a little."]
KEYS = [("lever", "op", "q1"), ("lever", "op", "q2"), ("none", "op", "q1")]


def _probe(lm: LoadedModel, seed: int = 0) -> ProbeJudge:
    rng = np.random.default_rng(seed)
    h = lm.hidden_size
    weights = ProbeWeights(
        DIMS,
        1,
        rng.normal(size=h).astype(np.float32),
        np.abs(rng.normal(size=h)).astype(np.float32) + 0.5,
        rng.normal(size=(len(DIMS), h)).astype(np.float32),
        rng.normal(size=(len(DIMS), h)).astype(np.float32),
    )
    return ProbeJudge(lm, weights, batch_size=2)


def test_a_probe_judge_scores_one_target_from_its_column_and_keeps_the_scores(
    tiny_lm: LoadedModel, tmp_path: Path
) -> None:
    probe = _probe(tiny_lm)
    other = OtherJudge(probe, "check")
    row = {k: i for i, k in enumerate(KEYS)}
    scored = other.target_scores("benevolence", tmp_path, KEYS, TEXTS, row, lambda _: None)
    np.testing.assert_allclose(scored, probe.score(TEXTS)[:, 1], rtol=1e-5)
    assert (tmp_path / "second_judge_probe_benevolence.json").exists()
    assert other.describe() == {"kind": "probe", "model": tiny_lm.name, "role": "check", "layer": 1}

    def broken(texts: object) -> np.ndarray:
        raise AssertionError("a kept score was computed again")

    probe.score = broken  # type: ignore[method-assign]
    assert other.target_scores("benevolence", tmp_path, KEYS, TEXTS, row, lambda _: None) == scored
    refit = OtherJudge(_probe(tiny_lm, seed=1))  # other weights: the kept scores no longer count
    rescored = refit.target_scores("benevolence", tmp_path, KEYS, TEXTS, row, lambda _: None)
    assert not np.allclose(rescored, scored)
    with pytest.raises(ConfigError, match="has no value 'hedonism'"):
        refit.target_scores("hedonism", tmp_path, KEYS, TEXTS, row, lambda _: None)


def test_a_contrast_judge_scores_one_target_as_the_single_value_judge_does(
    tiny_lm: LoadedModel, tmp_path: Path
) -> None:
    values = [
        ValueDefinition("power", "Power", "control over people", "no interest in control"),
        ValueDefinition("benevolence", "Benevolence", "care for people close to you", "indifference"),
    ]
    other = OtherJudge(ContrastJudge(tiny_lm, values, batch_size=2))
    row = {k: i for i, k in enumerate(KEYS)}
    scored = other.target_scores("power", tmp_path, KEYS, TEXTS, row, lambda _: None)
    alone = ContrastJudge(tiny_lm, values[:1], batch_size=2).score(TEXTS)[:, 0]
    np.testing.assert_allclose(scored, alone, atol=1e-5)
    assert (tmp_path / "second_judge_power.json").exists()  # the name earlier runs kept contrast scores under


def test_a_judge_spec_loads_a_probe_folder_and_names_what_is_wrong(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    folder = tmp_path / "second_judge"
    folder.mkdir()
    _probe(tiny_lm).save(folder, {})
    loaded_names: list[str] = []

    def load(name: str) -> LoadedModel:
        loaded_names.append(name)
        return tiny_lm

    loaded = load_other_judge(f"probe:{folder}", "check", field="--check-judge", load=load)
    assert loaded_names == [tiny_lm.name]  # the model named in judge.json
    assert loaded.kind == "probe" and loaded.role == "check" and loaded.judge.dimensions == DIMS
    with pytest.raises(ConfigError, match=r"judge\.json: --second-judge: no probe judge here"):
        load_other_judge(f"probe:{tmp_path / 'nowhere'}")
    with pytest.raises(ConfigError, match=r"unknown judge kind 'oracle'"):
        load_other_judge("oracle:gemma3-270m")
    doc = json.loads((folder / "judge.json").read_text())
    (folder / "judge.json").write_text(json.dumps({**doc, "model": {}}))
    with pytest.raises(ConfigError, match=r"model\.name"):
        load_other_judge(f"probe:{folder}", load=load)


def test_seeing_and_opposing_read_the_interval_on_the_intended_side() -> None:
    up = {"mean": 0.1, "ci_low": 0.05, "ci_high": 0.15}
    noise = {"mean": 0.01, "ci_low": -0.05, "ci_high": 0.07}
    assert sees(up, +1) and not sees(up, -1) and opposes(up, -1) and not opposes(up, +1)
    assert not sees(noise, +1) and not sees(noise, -1) and not opposes(noise, +1) and not opposes(noise, -1)


def test_a_wrong_judge_spec_stops_confirm_before_any_model_loads(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from causalguard.bundle.format import shipped_bundle_dir
    from causalguard.cli import app

    bundle = shipped_bundle_dir("smollm2-135m-instruct")
    for option, spec, expected in (
        ("--second-judge", f"probe:{tmp_path / 'nowhere'}", "no probe judge here"),
        ("--check-judge", "oracle:gemma3-270m", "unknown judge kind 'oracle'"),
    ):
        args = ["behaviour", "confirm", "--bundle", str(bundle), "--work", str(tmp_path / "w"), option, spec]
        result = CliRunner().invoke(app, args)
        assert result.exit_code != 0
        message = str(result.exception) + result.output
        assert expected in message and option in message
        assert not (tmp_path / "w").exists()  # nothing was generated


def test_an_unknown_vector_source_stops_levers_vectors_before_any_model_loads(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from causalguard.bundle.format import shipped_bundle_dir
    from causalguard.cli import app

    bundle = shipped_bundle_dir("smollm2-135m-instruct")
    result = CliRunner().invoke(app, ["levers", "vectors", "--bundle", str(bundle), "--source", "oracle"])
    assert result.exit_code != 0
    assert "unknown source 'oracle'; use replies or labelled" in str(result.exception) + result.output
