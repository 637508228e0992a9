"""Bundle integrity: every file's SHA-256 is recorded in bundle.json and checked on load, so a changed byte
anywhere is an error naming the file, never a plan built on it."""

from __future__ import annotations

import fnmatch
import json
import logging
import shutil
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from causalguard.bundle import load_bundle
from causalguard.bundle.integrity import bundle_files, seal_bundle
from causalguard.cli import app
from causalguard.errors import ConfigError
from causalguard.models.loaded import LoadedModel
from tests.repo_paths import ROOT

SHIPPED = ROOT / "graphs" / "causalguard" / "graphs"
MODELS = ("smollm2-135m-instruct", "gemma3-270m")
OFFSETS_PER_FILE = 50


def _copy(tmp_path: Path, model: str) -> Path:
    folder = tmp_path / model
    shutil.copytree(SHIPPED / model, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


@pytest.mark.parametrize("model", MODELS)
def test_the_shipped_bundles_are_sealed_and_load(model: str) -> None:
    doc = json.loads((SHIPPED / model / "bundle.json").read_text())
    assert set(doc["integrity"]["files"]) == set(bundle_files(SHIPPED / model))
    load_bundle(SHIPPED / model)


@pytest.mark.parametrize("model", MODELS)
def test_flipping_any_byte_of_any_file_is_an_error_naming_it(tmp_path: Path, model: str) -> None:
    folder = _copy(tmp_path, model)
    rng = np.random.default_rng(2901)
    files = ["bundle.json", *bundle_files(folder)]
    for rel in files:
        path = folder / rel
        original = path.read_bytes()
        for offset in rng.choice(len(original), size=min(OFFSETS_PER_FILE, len(original)), replace=False):
            damaged = bytearray(original)
            damaged[offset] ^= int(rng.integers(1, 256))
            path.write_bytes(bytes(damaged))
            with pytest.raises(ConfigError) as caught:
                load_bundle(folder)
            assert str(path) in str(caught.value), (rel, int(offset), str(caught.value))
        path.write_bytes(original)
    load_bundle(folder)  # restored: loads again


def test_added_removed_and_resealed_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = _copy(tmp_path, "gemma3-270m")
    (folder / "notes.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"notes\.json.*added after the bundle was sealed"):
        load_bundle(folder)
    (folder / "notes.json").unlink()
    (folder / "graph.svg").unlink()
    with pytest.raises(ConfigError, match=r"graph\.svg.*missing"):
        load_bundle(folder)
    result = CliRunner().invoke(app, ["graph", "seal", str(folder)])  # an intended change, sealed by hand
    assert result.exit_code == 0, result.output
    assert (
        "sealed" in result.output
        and "graph.svg" not in json.loads((folder / "bundle.json").read_text())["integrity"]["files"]
    )
    load_bundle(folder)
    doc = json.loads((folder / "bundle.json").read_text())
    doc.pop("integrity")
    (folder / "bundle.json").write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING):
        load_bundle(folder)  # written before integrity records existed: loads, with a warning
    assert "no integrity record" in caplog.text


def test_a_renamed_integrity_key_is_not_an_unsealed_bundle(tmp_path: Path) -> None:
    folder = _copy(tmp_path, "gemma3-270m")
    path = folder / "bundle.json"
    path.write_text(path.read_text().replace('"integrity":', '"integritx":'))
    with pytest.raises(ConfigError, match="integrity record is damaged"):
        load_bundle(folder)


def test_seal_refuses_a_folder_that_is_not_a_bundle(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["graph", "seal", str(tmp_path)])
    assert result.exit_code != 0 and "bundle.json" in result.output


def test_effects_beyond_any_fit_are_refused(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    folder = _copy(tmp_path, "gemma3-270m")
    tensors = load_file(str(folder / "effects.safetensors"))
    tensors["total"] = np.full_like(tensors["total"], 1e38)
    save_file(tensors, str(folder / "effects.safetensors"))
    seal_bundle(folder)  # even when sealed as such
    with pytest.raises(ConfigError, match=r"effects\.safetensors.*beyond any fitted effect"):
        load_bundle(folder)


@pytest.mark.parametrize("model", MODELS)
def test_a_wheel_ships_every_file_the_record_lists(model: str) -> None:
    """The package data globs cover every sealed file, so an installed bundle is complete."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "causalguard.graphs"
    ]
    for rel in ["bundle.json", *bundle_files(SHIPPED / model)]:
        assert any(fnmatch.fnmatch(f"{model}/{rel}", g) for g in globs), rel


def _edit(name: str, change: Callable[[dict[str, Any]], object]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        path = folder / name
        doc = json.loads(path.read_text())
        change(doc)
        path.write_text(json.dumps(doc))

    return damage


def _lever(doc: dict[str, Any], lever_id: str) -> dict[str, Any]:
    return next(lever for lever in doc["levers"] if lever["id"] == lever_id)


VECTOR = "vector:stimulation:+:L21:0.15"
SEALED_DAMAGE: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "NaN noise threshold": (
        _edit("catalog.json", lambda d: d["noise_threshold"].update(power=float("nan"))),
        "catalog.json",
        "noise_threshold.power",
    ),
    "infinite strength": (
        _edit("catalog.json", lambda d: _lever(d, VECTOR).update(strength=float("inf"))),
        "catalog.json",
        "strength",
    ),
    "NaN specificity": (
        _edit(
            "catalog.json",
            lambda d: next(x for x in d["levers"] if x["kind"] == "sae").update(specificity=float("nan")),
        ),
        "catalog.json",
        "specificity",
    ),
    "perplexity ratio NaN": (
        _edit(
            "catalog.json",
            lambda d: next(x for x in d["levers"] if x["kind"] == "sae")["fluency"].update(
                perplexity_ratio=float("nan")
            ),
        ),
        "catalog.json",
        "perplexity_ratio",
    ),
    "unparseable rate above 1": (
        _edit("catalog.json", lambda d: d["baseline_fluency"].update(unparseable_rate=3)),
        "catalog.json",
        "unparseable_rate",
    ),
    "NaN reply baseline": (
        _edit("catalog.json", lambda d: d["replies_baseline"].update(power=float("nan"))),
        "catalog.json",
        "replies_baseline.power",
    ),
    "another model's catalog": (
        _edit("catalog.json", lambda d: d["model"].update(fingerprint="w1:other")),
        "catalog.json",
        "model.fingerprint",
    ),
    "usable but degrading": (
        _edit("catalog.json", lambda d: _lever(d, VECTOR)["replies"].update(degrades_replies=True)),
        "catalog.json",
        "'usable', but degrades_replies",
    ),
    "usable after a failed held-out test": (
        _edit("catalog.json", lambda d: _lever(d, VECTOR)["replies"]["held_out"].update(passed=False)),
        "catalog.json",
        "held-out test failed",
    ),
    "role lever without text": (
        _edit("catalog.json", lambda d: next(x for x in d["levers"] if x["kind"] == "role").update(text=None)),
        "catalog.json",
        "needs its text",
    ),
    "evaluation emptied": (_edit("bundle.json", lambda d: d.update(evaluation={})), "bundle.json", "evaluation"),
    "human comparison emptied": (
        _edit("bundle.json", lambda d: d.update(human_comparison={})),
        "bundle.json",
        "human_comparison",
    ),
    "survey section a string": (_edit("bundle.json", lambda d: d.update(survey="x")), "bundle.json", "survey"),
}


@pytest.mark.parametrize("case", list(SEALED_DAMAGE))
def test_what_the_hashes_vouch_for_is_still_checked(tmp_path: Path, case: str) -> None:
    """A damaged file sealed as if intended (a bad export): the typed checks behind the hashes refuse it."""
    damage, file, message = SEALED_DAMAGE[case]
    folder = _copy(tmp_path, "smollm2-135m-instruct")
    damage(folder)
    seal_bundle(folder)
    with pytest.raises(ConfigError) as caught:
        load_bundle(folder)
    assert file in str(caught.value) and message in str(caught.value), str(caught.value)


@pytest.mark.parametrize("damage", ["reordered", "layer missing", "layer a string"])
def test_a_judge_whose_values_or_layer_do_not_fit_is_refused(lm: LoadedModel, tmp_path: Path, damage: str) -> None:
    from causalguard.judging.judge import load_probe_judge

    folder = _copy(tmp_path, "smollm2-135m-instruct")
    load_probe_judge(folder, lm)
    change = {
        "reordered": lambda d: d.update(dimensions=list(reversed(d["dimensions"]))),
        "layer missing": lambda d: d.pop("layer"),
        "layer a string": lambda d: d.update(layer="21"),
    }[damage]
    _edit("judge.json", change)(folder)
    seal_bundle(folder)
    with pytest.raises(ConfigError) as caught:
        load_probe_judge(folder, lm)
    field = "dimensions" if damage == "reordered" else "layer"
    assert "judge.json" in str(caught.value) and field in str(caught.value), str(caught.value)
