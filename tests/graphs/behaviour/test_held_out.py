"""The pooled held-out test of levers (``behaviour held-out``): pooling, verdicts, the planner's refusal."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from scipy import stats

from causalguard.bundle.integrity import seal_bundle
from causalguard.config.schema import LimitsSpec, ProfileSpec, TargetSpec
from causalguard.errors import ConfigError
from causalguard.graphs.behaviour.held_out import (
    HELD_OUT_FILE,
    held_out_catalog,
    held_out_record,
    pocock_z,
    read_held_out,
)
from causalguard.planning import PlanInfeasibleError, plan_levers
from tests.guard_fakes import fake_bundle_v2, fake_catalog_v2
from tests.repo_paths import ROOT


def _profile(lever: str, target: str, mean: float, half: float, n: int = 80, degraded: bool = False) -> dict[str, Any]:
    return {
        "levers": [lever],
        "target_moved_as_intended": {target: False},
        "measured": {target: {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": n}},
        "quality": {"is_degraded": degraded},
    }


def _look(tmp_path: Path, name: str, **profiles: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"profiles": profiles}))
    return path


def test_pooling_is_inverse_variance_weighted_at_the_pocock_level(tmp_path: Path) -> None:
    first = _look(tmp_path, "v1.json", a=_profile("role:power:-", "power", -0.10, 0.05))
    second = _look(
        tmp_path,
        "v2.json",
        b=_profile("role:power:-", "power", -0.02, 0.10),
        twin=_profile("role:power:-", "power", -0.02, 0.10),
    )  # the same lever twice: one look
    record = held_out_record(fake_catalog_v2(), [first, second])
    t = stats.t.ppf(0.975, 79)
    se1, se2 = 0.05 / t, 0.10 / t
    w1, w2 = 1 / se1**2, 1 / se2**2
    row = record["levers"]["role:power:-"]
    assert row["pooled"]["mean"] == pytest.approx((w1 * -0.10 + w2 * -0.02) / (w1 + w2))
    assert row["pooled"]["ci_high"] - row["pooled"]["mean"] == pytest.approx(2.178 / math.sqrt(w1 + w2))
    assert record["level"] == pytest.approx(0.9706, abs=1e-4) and row["pooled"]["n"] == 160
    assert len(row["looks"]) == 2 and row["passed"]


def test_a_lever_that_fails_becomes_failed_held_out_and_one_that_holds_keeps_its_verdict(tmp_path: Path) -> None:
    look = _look(
        tmp_path,
        "v.json",
        down=_profile("role:power:-", "power", -0.01, 0.05),  # interval spans 0: fails
        up=_profile("role:power:+", "power", 0.15, 0.05),  # holds
        mild=_profile("sae:f7:-0.25", "power", -0.2, 0.05, degraded=True),  # moved, but degraded
        idle=_profile("role:benevolence:+", "benevolence", 0.2, 0.05),
    )  # held, yet never promoted
    catalog = fake_catalog_v2()
    updated = held_out_catalog(catalog, held_out_record(catalog, [look]))
    verdict = {e.id: e.replies.verdict for e in updated.levers if e.replies is not None}
    assert verdict["role:power:-"] == "failed_held_out"
    assert verdict["role:power:+"] == "usable"
    assert verdict["sae:f7:-0.25"] == "failed_held_out"
    assert verdict["role:benevolence:+"] == "no_target_effect"
    down = updated.lever("role:power:-").replies
    assert down is not None and down.held_out is not None and not down.held_out.passed
    assert "did not hold" in down.why and down.held_out.looks == ["v.json"]
    # applying the same record again changes nothing
    assert held_out_catalog(updated, held_out_record(catalog, [look])) == updated


def test_the_planner_refuses_a_lever_that_failed_held_out_and_says_why(tmp_path: Path) -> None:
    bundle = fake_bundle_v2()
    look = _look(
        tmp_path,
        "v.json",
        a=_profile("role:power:-", "power", 0.01, 0.05),
        b=_profile("sae:f7:-0.25", "power", 0.0, 0.05),
    )
    profile = ProfileSpec(targets={"power": TargetSpec(direction="decrease")})
    assert plan_levers(profile, bundle, LimitsSpec()).levers  # feasible before the test
    bundle.catalog = held_out_catalog(bundle.catalog, held_out_record(bundle.catalog, [look]))  # type: ignore[arg-type]
    with pytest.raises(PlanInfeasibleError, match="did not hold: power") as excinfo:
        plan_levers(profile, bundle, LimitsSpec())
    assert "on held-out prompts" in str(excinfo.value)


def test_bad_looks_are_errors_that_name_the_file_and_field(tmp_path: Path) -> None:
    catalog = fake_catalog_v2()
    unknown = _look(tmp_path, "u.json", p=_profile("role:nobody:+", "power", 0.1, 0.05))
    with pytest.raises(ConfigError, match=r"u\.json.*profiles\.p\.levers.*not in the bundle's catalog"):
        held_out_record(catalog, [unknown])
    broken = _look(
        tmp_path,
        "b.json",
        p={
            **_profile("role:power:-", "power", -0.1, 0.05),
            "measured": {"power": {"mean": -0.1, "ci_low": "x", "ci_high": 0, "n": 80}},
        },
    )
    with pytest.raises(ConfigError, match=r"b\.json.*profiles\.p\.measured\.power"):
        held_out_record(catalog, [broken])
    with pytest.raises(ConfigError, match="no such file"):
        held_out_record(catalog, [tmp_path / "missing.json"])
    with pytest.raises(ValueError, match="1 to 5 looks"):
        pocock_z(6)


def test_the_held_out_file_is_validated_on_read(tmp_path: Path) -> None:
    assert read_held_out(tmp_path) == {"levers": {}}
    look = _look(tmp_path, "v.json", a=_profile("role:power:-", "power", -0.1, 0.05))
    record = held_out_record(fake_catalog_v2(), [look])
    (tmp_path / HELD_OUT_FILE).write_text(json.dumps(record))
    assert read_held_out(tmp_path)["levers"].keys() == {"role:power:-"}
    record["levers"]["role:power:-"]["pooled"]["ci_low"] = None
    (tmp_path / HELD_OUT_FILE).write_text(json.dumps(record))
    with pytest.raises(ConfigError, match=r"held_out\.json.*levers\.role:power:-\.pooled"):
        read_held_out(tmp_path)


def test_the_command_re_derives_the_shipped_verdicts_from_the_shipped_validations(tmp_path: Path) -> None:
    import shutil

    from typer.testing import CliRunner

    from causalguard.bundle.catalog import load_catalog
    from causalguard.cli import app

    shipped = ROOT / "graphs/causalguard/graphs/smollm2-135m-instruct"
    folder = tmp_path / "bundle"
    folder.mkdir()
    looks = (
        "validation.json",
        "validation-test101-120.json",
        "validation-fresh-test1-40.json",
        "validation-fresh-test41-120.json",
        "validation-test121-160.json",
    )
    # the all-token vectors' looks on the w split, each its own one-look design
    series = ("validation-test401-440.json", "validation-test441-480.json")
    for name in ("bundle.json", "effects.safetensors", "catalog.json", *looks, *series):
        shutil.copy(shipped / name, folder / name)
    seal_bundle(folder)
    result = CliRunner().invoke(
        app,
        [
            "behaviour",
            "held-out",
            "--bundle",
            str(folder),
            *(str(folder / name) for name in looks),
            *(arg for name in series for arg in ("--series", str(folder / name))),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "role:stimulation:-:reply: did not hold" in result.output
    # the role lever held three looks by the probe judge; the fourth look's second judge did not see it
    assert "role:stimulation:+:reply: did not hold" in result.output
    assert "vector:stimulation:+:L21:0.15: held" in result.output
    assert "vector:universalism:-:L10:0.15: did not hold" in result.output  # degraded replies in look 4
    assert "vector:power:-:L12:0.3: did not hold" in result.output
    assert "the second judge did not see it" in result.output
    assert "series 2: 1 look(s), Pocock design: 95.00% intervals" in result.output
    assert "vector:benevolence:+:L15:0.15:all: held" in result.output
    assert "vector:self_direction:+:L21:0.15:all: did not hold" in result.output  # degraded replies
    assert "series 3: 1 look(s)" in result.output and "vector:self_direction:+:L21:0.1:all: held" in result.output
    catalog = load_catalog(folder)
    assert catalog is not None
    assert catalog.lever("role:stimulation:-:reply").replies.verdict == "failed_held_out"  # type: ignore[union-attr]
    assert catalog.lever("role:stimulation:+:reply").replies.verdict == "failed_held_out"  # type: ignore[union-attr]
    assert catalog.lever("vector:stimulation:+:L21:0.15").replies.verdict == "usable"  # type: ignore[union-attr]
    assert json.loads((shipped / "catalog.json").read_text()) == json.loads((folder / "catalog.json").read_text())


def test_the_record_counts_forecast_signs_of_the_values_that_moved(tmp_path: Path) -> None:
    profile = _profile("role:power:+", "power", 0.2, 0.05)
    profile.update(
        moved_beyond_noise=["power", "achievement"],
        forecast={"power": {"change": 0.1}, "achievement": {"change": 0.05}},
        measured={**profile["measured"], "achievement": {"mean": -0.03}},
    )
    record = held_out_record(fake_catalog_v2(), [_look(tmp_path, "v.json", up=profile)])
    row = record["levers"]["role:power:+"]
    assert row["side_effect_signs"] == {"moved": 2, "agreed": 1}
    assert "forecast sign right for 1 of 2 values that moved" in row["why"]


def test_a_look_whose_second_judge_did_not_see_the_target_move_fails_the_lever(tmp_path: Path) -> None:
    seen = {**_profile("role:power:+", "power", 0.15, 0.05), "second_judge_confirms": {"power": True}}
    unseen = {**_profile("role:power:-", "power", -0.15, 0.05), "second_judge_confirms": {"power": False}}
    record = held_out_record(fake_catalog_v2(), [_look(tmp_path, "v.json", up=seen, down=unseen)])
    assert record["levers"]["role:power:+"]["passed"]
    down = record["levers"]["role:power:-"]
    assert not down["passed"] and "the second judge did not see it in v.json" in down["why"]


def test_a_fresh_split_is_a_new_series_that_never_rescues_a_failed_lever(tmp_path: Path) -> None:
    from causalguard.graphs.behaviour.held_out import held_out_series_record

    catalog = fake_catalog_v2()
    failed = _look(tmp_path, "old.json", a=_profile("role:power:-", "power", 0.10, 0.05))
    held = _look(tmp_path, "new.json", a=_profile("role:power:-", "power", -0.30, 0.05))
    record = held_out_series_record(catalog, [[failed], [held]])
    row = record["levers"]["role:power:-"]
    assert not row["passed"] and row["series"] == 0  # the later split does not rescue it
    assert [s["looks"] for s in record["series"]] == [["old.json"], ["new.json"]]
    two_looks = held_out_series_record(catalog, [[failed, held], [held]])
    assert two_looks["series"][0]["level"] == pytest.approx(0.9706, abs=1e-4)
    fresh = held_out_series_record(catalog, [[held]])
    assert fresh["levers"]["role:power:-"]["passed"] and fresh["levers"]["role:power:-"]["level"] == pytest.approx(
        0.95, abs=1e-3
    )
    updated = held_out_catalog(catalog, fresh)
    assert updated.lever("role:power:-").replies.held_out.level == pytest.approx(0.95, abs=1e-3)  # type: ignore[union-attr]
