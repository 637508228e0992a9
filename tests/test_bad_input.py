"""Bad input, table-driven: every case ends in a clear error naming the file and field, never a
traceback and never a silently different number. (More cases live beside their features:
test_guard_config.py, test_behaviour.py, test_survey.py, test_server_app.py.)"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from causalguard.config.loading import read_guard_config
from causalguard.errors import ConfigError
from causalguard.graphs.bundle.format import load_bundle, shipped_bundle_dir

SHIPPED = shipped_bundle_dir("smollm2-135m-instruct")


def _bundle_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "bundle"
    folder.mkdir()
    for name in ("bundle.json", "effects.safetensors", "catalog.json", "behaviour.json"):
        shutil.copy(SHIPPED / name, folder / name)
    return folder


def _tensors(folder: Path, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    tensors = load_file(str(folder / "effects.safetensors"))
    change(tensors)
    save_file(tensors, str(folder / "effects.safetensors"))


def _json(folder: Path, name: str, change: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    doc = json.loads((folder / name).read_text())
    change(doc)
    (folder / name).write_text(json.dumps(doc))


BUNDLE_CASES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "bundle.json not UTF-8": (lambda f: (f / "bundle.json").write_bytes(b'{"schema": "\xff"}'),
                              "bundle.json", "not UTF-8"),
    "effects missing": (lambda f: (f / "effects.safetensors").unlink(), "effects.safetensors", "missing"),
    "effects empty": (lambda f: (f / "effects.safetensors").write_bytes(b""), "effects.safetensors",
                      "not a readable safetensors"),
    "effects truncated": (lambda f: (f / "effects.safetensors").write_bytes(
        (f / "effects.safetensors").read_bytes()[:200]), "effects.safetensors", "not a readable safetensors"),
    "effects random bytes": (lambda f: (f / "effects.safetensors").write_bytes(bytes(range(256)) * 8),
                             "effects.safetensors", "not a readable safetensors"),
    "effects tensor missing": (lambda f: _tensors(f, lambda t: t.pop("class_low")), "effects.safetensors",
                               "'class_low' is missing"),
    "effects wrong shape": (lambda f: _tensors(f, lambda t: t.update(total=np.zeros((3, 3), dtype=np.float32))),
                            "effects.safetensors", "expected (10, 10)"),
    "effects NaN": (lambda f: _tensors(f, lambda t: t["total"].__setitem__((0, 1), np.nan)), "effects.safetensors",
                    "NaN or infinite"),
    "graph edge to an unknown value": (
        lambda f: _json(f, "bundle.json", lambda d: d["graph"]["edges"].append(
            {**d["graph"]["edges"][0], "target": "greed"})), "bundle.json", "graph"),
    "catalog with other values": (lambda f: _json(f, "catalog.json", lambda d: d.update(
        dimensions=d["dimensions"][:2])), "catalog.json", "dimensions"),
    "catalog NaN effect": (lambda f: _json(f, "catalog.json", lambda d: d["levers"][0]["effects"][
        d["dimensions"][0]].update(mean=float("nan"))), "catalog.json", "finite"),
    "catalog infinite baseline": (lambda f: _json(f, "catalog.json", lambda d: d["baseline"][d["dimensions"][0]]
                                                  .update(ci_high=float("inf"))), "catalog.json", "finite"),
}


@pytest.mark.parametrize("case", list(BUNDLE_CASES))
def test_a_bad_bundle_is_a_clear_error(tmp_path: Path, case: str) -> None:
    damage, file, message = BUNDLE_CASES[case]
    folder = _bundle_copy(tmp_path)
    load_bundle(folder)  # the copy itself is fine
    damage(folder)
    with pytest.raises(ConfigError) as caught:
        load_bundle(folder)
    assert file in str(caught.value) and message in str(caught.value), str(caught.value)


CONFIG_CASES: dict[str, tuple[str, str]] = {
    "NaN change": ("targets:\n  power: {change: .nan}\n", "targets.power.change"),
    "infinite tolerance": ("protected:\n  power: {tolerance: .inf}\n", "protected.power.tolerance"),
    "huge change": ("targets:\n  power: {change: 1e308}\n", "targets.power.change"),
    "NaN limit": ("limits: {side_effect_weight: .nan}\n", "limits.side_effect_weight"),
    "CPU share over 1": ("audit: {max_cpu_share: 2}\n", "audit.max_cpu_share"),
    "unknown units": ("units: nats\n", "units"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_a_bad_number_in_guard_yaml_is_a_clear_error(tmp_path: Path, case: str) -> None:
    text, field = CONFIG_CASES[case]
    path = tmp_path / "guard.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_guard_config(path)
    assert f"{path}:" in str(caught.value) and field in str(caught.value), str(caught.value)
