"""``behaviour confirm`` end to end on the real default model and a copy of its shipped bundle: fresh
replies, judged by the bundle's judge, replace the lever's catalog effects and decide its verdict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from causalguard.bundle.catalog import load_catalog
from causalguard.bundle.format import shipped_bundle_dir
from causalguard.graphs.behaviour.confirm import ConfirmSettings, confirm_levers
from causalguard.graphs.behaviour.replies import ReplySettings
from causalguard.models.loaded import LoadedModel

pytestmark = pytest.mark.slow
LEVER = "role:stimulation:+:reply"


def test_confirming_a_lever_rewrites_its_effects_from_fresh_replies(lm: LoadedModel, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(shipped_bundle_dir("smollm2-135m-instruct"), bundle)
    before = load_catalog(bundle).lever(LEVER).replies  # type: ignore[union-attr]
    assert before is not None and before.screening is not None
    settings = ConfirmSettings(
        levers=(LEVER,), prompts=10, prompt_offset=100, personas=1, replies=ReplySettings(max_new_tokens=24)
    )
    doc = confirm_levers(lm, bundle, tmp_path / "work", settings, log=lambda _: None)
    after = load_catalog(bundle).lever(LEVER).replies  # type: ignore[union-attr]
    assert after is not None and after.n == 10 and after.effects != before.effects
    assert after.screening == before.screening  # the first, selecting measurement is kept
    # this lever failed the bundle's held-out test: a new confirmation rewrites its effects, never that verdict
    assert before.verdict == after.verdict == "failed_held_out" and "10 fresh pairs" in after.why
    written = json.loads((bundle / "confirmation.json").read_text())
    assert list(doc["levers"]) == [LEVER] and written["levers"][LEVER]["run"]["prompt_offset"] == 100
    assert "role:stimulation:-:reply" in written["levers"]  # levers confirmed in earlier runs stay in the file
    untouched = load_catalog(bundle).lever("role:stimulation:-:reply").replies  # type: ignore[union-attr]
    assert untouched is not None and untouched.n == 80
    assert untouched.verdict == "failed_held_out"  # the bundle's held-out test outlives a new confirmation
