"""Building the guard's state: a units switch that changes a profile's plan is named, in the plan's
reasons and the log; the profile's units are a metric."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from causalguard.config.loading import read_guard_config
from causalguard.metrics import GuardMetrics
from causalguard.runtime.state import build_guard_state
from tests.guard_fakes import GUARD_YAML, fake_bundle_v2


def _config(tmp_path: Path, units: str) -> Path:
    data = yaml.safe_load(GUARD_YAML)
    data["units"] = units
    data.pop("protected")
    path = tmp_path / "guard.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_units_switch_that_changes_a_plan_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="causalguard.runtime.state"):
        state = build_guard_state(read_guard_config(_config(tmp_path, "survey")), fake_bundle_v2(), sae=None)
    kind = state.plans["kind"]  # replies units refuse it (its role lever did not move replies); survey plans it
    assert [lever.id for lever in kind.levers] == ["role:benevolence:+"] and kind.units == "survey"
    note = kind.reasons[-1]
    assert note.startswith("units: survey changes this profile's plan: role:benevolence:+ in survey units")
    assert "replies units (this bundle's default) refuse it" in note
    assert any("profile kind: units: survey changes" in r.getMessage() for r in caplog.records)
    default = state.plans["default"]  # the same lever in either units: no note
    assert not any(r.startswith("units:") for r in default.reasons)
    metrics = GuardMetrics()
    metrics.publish_plan(kind)
    sample = metrics.registry.get_sample_value
    assert sample("causalguard_profile_units", {"profile": "kind", "units": "survey"}) == 1
    assert sample("causalguard_profile_units", {"profile": "kind", "units": "replies"}) == 0


def test_the_default_units_add_no_note(tmp_path: Path) -> None:
    path = _config(tmp_path, "replies")
    data = yaml.safe_load(path.read_text())
    data["profiles"].pop("kind")
    path.write_text(yaml.safe_dump(data))
    state = build_guard_state(read_guard_config(path), fake_bundle_v2(), sae=None)
    assert not any(r.startswith("units:") for plan in state.plans.values() for r in plan.reasons)
