"""Catalog v2: reply measurements and verdicts per lever, and planning in reply units."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from causalguard.bundle.catalog import Catalog, load_catalog, save_catalog
from causalguard.config.schema import LimitsSpec, ProfileSpec, ProtectedSpec, TargetSpec
from causalguard.errors import ConfigError
from causalguard.graphs.levers.variants import load_wordings, reply_style_levers, sweep_levers
from causalguard.graphs.levers.verdicts import attach_replies
from causalguard.planning import PlanInfeasibleError, plan_levers
from causalguard.planning.explain import explain_plan
from tests.guard_fakes import BASELINE, DIMS, fake_bundle, fake_bundle_v2, fake_catalog, fake_catalog_v2, reply_row


def _catalog_v2() -> Catalog:
    return fake_catalog_v2()


def _bundle():  # type: ignore[no-untyped-def]
    return fake_bundle_v2()


def test_verdicts_keep_the_strongest_fluent_setting_and_mark_non_movers() -> None:
    catalog = _catalog_v2()
    verdict = {e.id: (e.replies.verdict if e.replies else None) for e in catalog.levers}
    assert verdict == {
        "role:power:-": "usable",
        "role:power:+": "usable",
        "sae:f7:-0.5": "degrades_replies",
        "sae:f9:-0.5": None,
        "role:benevolence:+": "no_target_effect",
        "sae:f7:-0.25": "usable",
    }
    assert catalog.schema_ == "causalguard.catalog/2" and catalog.has_replies


def test_a_weaker_fluent_setting_is_superseded_by_a_stronger_fluent_one() -> None:
    base = _catalog_v2()
    rows = [reply_row(e.id, {"power": -0.2}, target="power", direction=-1) for e in base.levers if e.feature == 7]
    catalog = attach_replies(base, rows, BASELINE)
    assert catalog.lever("sae:f7:-0.5").replies.verdict == "usable"  # type: ignore[union-attr]
    assert catalog.lever("sae:f7:-0.25").replies.verdict == "weaker_setting"  # type: ignore[union-attr]


def test_catalog_v2_round_trips_and_v1_still_loads(tmp_path: Path) -> None:
    save_catalog(_catalog_v2(), tmp_path)
    loaded = load_catalog(tmp_path)
    assert loaded is not None and loaded.lever("sae:f7:-0.5").replies.verdict == "degrades_replies"  # type: ignore[union-attr]
    save_catalog(fake_catalog(), tmp_path)
    v1 = load_catalog(tmp_path)
    assert v1 is not None and not v1.has_replies and v1.levers[0].replies is None


def test_a_nan_reply_effect_is_refused_at_load(tmp_path: Path) -> None:
    save_catalog(_catalog_v2(), tmp_path)
    doc = json.loads((tmp_path / "catalog.json").read_text())
    doc["levers"][0]["replies"]["effects"]["power"]["mean"] = float("nan")
    (tmp_path / "catalog.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="finite"):
        load_catalog(tmp_path)


def test_planning_in_reply_units_never_uses_degrading_or_unmeasured_levers() -> None:
    profile = ProfileSpec(
        targets={"power": TargetSpec(direction="decrease")}, protected={"achievement": ProtectedSpec(tolerance=0.05)}
    )
    plan = plan_levers(profile, _bundle(), LimitsSpec(max_levers=1))
    assert plan.units == "replies"
    # sae:f7:-0.5 moves power most but degrades replies; sae:f9 was never measured on replies;
    # role:power:- drags achievement past the tolerance: the fluent weaker setting remains
    assert [lever.id for lever in plan.levers] == ["sae:f7:-0.25"]
    f = plan.forecast_for("power")
    assert f.change == pytest.approx(-0.12) and f.high < 0 and f.survey_change == pytest.approx(-0.08)
    text = explain_plan(plan, _bundle().catalog)  # type: ignore[arg-type]
    assert "reply scale" in text and "survey -0.080" in text and "degrade: sae:f7:-0.5" in text


def test_survey_units_stay_available() -> None:
    plan = plan_levers(
        ProfileSpec(targets={"power": TargetSpec(direction="decrease")}),
        _bundle(),
        LimitsSpec(max_levers=1),
        units="survey",
    )
    assert plan.units == "survey" and plan.forecast_for("power").survey_change is None
    assert "sae:f7:-0.5" not in [lever.id for lever in plan.levers]  # reply quality binds in any units


def test_replies_units_need_a_catalog_measured_on_replies() -> None:
    with pytest.raises(PlanInfeasibleError, match="units: replies needs"):
        plan_levers(
            ProfileSpec(targets={"power": TargetSpec(direction="decrease")}),
            fake_bundle(),
            LimitsSpec(),
            units="replies",
        )


def test_a_lever_that_does_not_move_its_target_cannot_meet_it() -> None:
    with pytest.raises(PlanInfeasibleError) as caught:
        plan_levers(
            ProfileSpec(targets={"benevolence": TargetSpec(direction="increase")}), _bundle(), LimitsSpec(max_levers=1)
        )
    assert "benevolence (increase): role:benevolence:+ +0.02" in str(caught.value)
    assert "no target effect" in str(caught.value)


def test_a_side_effect_is_never_relied_on_to_reach_a_goal() -> None:
    # role:power:- lowers achievement in its replies (-0.15) too, but it was built for power: a goal on
    # achievement alone has no lever of its own and is refused, and so is one beside power
    for targets in (
        {"achievement": TargetSpec(direction="decrease")},
        {"power": TargetSpec(direction="decrease"), "achievement": TargetSpec(direction="decrease")},
    ):
        with pytest.raises(PlanInfeasibleError) as caught:
            plan_levers(ProfileSpec(targets=targets), _bundle(), LimitsSpec(max_levers=2))
        text = str(caught.value)
        assert "achievement" in text and ("the catalog has no lever for it" in text or "not moved" in text)
    # in survey units side effects still count (the survey is what the graph and v1 catalogs speak)
    plan = plan_levers(
        ProfileSpec(targets={"achievement": TargetSpec(direction="decrease")}),
        _bundle(),
        LimitsSpec(max_levers=1),
        units="survey",
    )
    assert plan.levers


def test_reply_unit_plans_hold_only_levers_that_moved_their_own_goal() -> None:
    plan = plan_levers(
        ProfileSpec(targets={"power": TargetSpec(direction="decrease")}), _bundle(), LimitsSpec(max_levers=2)
    )
    for lever in plan.levers:
        assert lever.target == "power" and lever.direction == -1
        assert lever.replies is not None and lever.replies.verdict == "usable"


def test_an_unreachable_goal_is_a_warning_naming_what_is_reachable() -> None:
    plan = plan_levers(ProfileSpec(targets={"power": TargetSpec(change=-0.9)}), _bundle(), LimitsSpec(max_levers=2))
    assert plan.warnings and "asked -0.900" in plan.warnings[0]
    assert "the most any allowed combination moves it is -0.420" in plan.warnings[0]
    assert "WARNING unreachable" in explain_plan(plan, _bundle().catalog)  # type: ignore[arg-type]
    reachable = plan_levers(ProfileSpec(targets={"power": TargetSpec(change=-0.12)}), _bundle(), LimitsSpec())
    assert reachable.warnings == ()


def test_a_score_goal_in_reply_units_starts_from_the_unsteered_replies() -> None:
    plan = plan_levers(ProfileSpec(targets={"power": TargetSpec(score=-0.2)}), _bundle(), LimitsSpec(max_levers=1))
    assert plan.goals["power"] == pytest.approx(-0.3)


def test_the_graph_forecast_is_labelled_with_its_held_out_evaluation() -> None:
    bundle = _bundle()
    bundle.doc["evaluation"] = {"predictors": {"graph": {"auroc": 0.49}, "correlation": {"auroc": 0.69}}}
    plan = plan_levers(
        ProfileSpec(targets={"power": TargetSpec(direction="decrease")}), bundle, LimitsSpec(), units="survey"
    )  # reply-unit plans are labelled with the reply graph (test_reply_graph.py)
    assert "does not beat the best baseline (correlation 0.690; held-out personas, value roles)" in plan.graph_label
    assert all(f.graph_change is None for f in plan.forecast)  # so it forecasts nothing
    assert plan.graph_label in explain_plan(plan, bundle.catalog)  # type: ignore[arg-type]


def test_variants_sweep_and_wordings(tmp_path: Path) -> None:
    ids = [lever.id for lever in sweep_levers([(7, "power")], [0.1, -0.1])]
    assert ids == ["sae:f7:+0.1", "sae:f7:-0.1"]
    with pytest.raises(ValueError, match="non-zero"):
        sweep_levers([(7, "power")], [0.0])
    assert {lever.id for lever in reply_style_levers(DIMS)} == {f"role:{d}:{s}:reply" for d in DIMS for s in "+-"}
    path = tmp_path / "w.yaml"
    path.write_text(
        "wordings:\n  - {value: power, direction: down, text: 'Never suggest seeking power.'}\n"
        "  - {value: powr, direction: up, text: 'Always suggest seeking power.'}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_wordings(path, DIMS)
    assert f"{path}:3: wordings[1].value: unknown value 'powr'" in str(caught.value)
    path.write_text("wordings:\n  - {value: power, direction: down, text: 'Never suggest seeking power.'}\n")
    assert [lever.id for lever in load_wordings(path, DIMS)] == ["role:power:-:operator"]


def test_levers_show_never_calls_a_lever_best_unless_it_moves_its_target_in_replies() -> None:
    from causalguard.bundle.catalog import render_report

    text = render_report(_catalog_v2())
    assert "| benevolence | + | none usable: no lever moves it in replies" in text  # role:benevolence:+ does not
    assert "| power | - | role:power:- |" in text  # not sae:f7:-0.5 (degrades) nor sae:f9 (unmeasured)
    assert "| sae:f9:-0.5 | power | | | | not measured on replies | never planned |" in text


def _interval(mean: float, half: float = 0.05) -> dict[str, float]:
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": 40}


def test_validation_verdict_needs_target_movement_quality_and_sign_agreement() -> None:
    from causalguard.graphs.behaviour.validate import _verdict

    plan = plan_levers(
        ProfileSpec(targets={"power": TargetSpec(direction="decrease")}), _bundle(), LimitsSpec(max_levers=2)
    )
    fine = {"degraded": 1, "n": 40, "baseline_degraded": 1, "baseline_n": 40, "is_degraded": False}
    measured = {"power": _interval(-0.2), "achievement": _interval(-0.1), "benevolence": _interval(0.0)}
    ok = _verdict(plan, measured, fine, 0.8)
    assert ok["passed"] and ok["target_moved_as_intended"] == {"power": True}
    assert ok["moved_beyond_noise"] == ["power", "achievement"]
    assert _verdict(plan, {**measured, "power": _interval(-0.02)}, fine, 0.8)["passed"] is False  # within noise
    assert _verdict(plan, measured, {**fine, "is_degraded": True}, 0.8)["passed"] is False  # degraded replies
    wrong_sign = _verdict(plan, {**measured, "achievement": _interval(+0.3)}, fine, 0.8)
    assert plan.forecast_for("achievement").change < 0  # the forecast says achievement falls; replies: it rises
    assert wrong_sign["sign_agreement"] == 0.5 and wrong_sign["passed"] is False
    assert len(plan.levers) == 2
    assert ok["additivity"]["target_miss"]["power"] == pytest.approx(-0.2 - plan.forecast_for("power").change)


def test_cached_scores_reuse_by_reply_key_across_orders_and_subsets(tmp_path: Path) -> None:
    from causalguard.graphs.behaviour.score_cache import cached_scores

    calls: list[list[int]] = []

    def compute(keys):  # type: ignore[no-untyped-def]
        def run(idx):  # type: ignore[no-untyped-def]
            calls.append(list(idx))
            return [f"s:{keys[i][0]}" for i in idx]

        return run

    a = [("x", "p", "q"), ("y", "p", "q")]
    assert cached_scores(tmp_path / "c.json", 1, a, compute(a)) == ["s:x", "s:y"]
    b = [("z", "p", "q"), ("y", "p", "q")]  # another order, one new reply
    assert cached_scores(tmp_path / "c.json", 1, b, compute(b)) == ["s:z", "s:y"]
    assert calls == [[0, 1], [0]]
    assert cached_scores(tmp_path / "c.json", 2, a, compute(a)) == ["s:x", "s:y"] and calls[-1] == [0, 1]


def test_cached_scores_in_chunks_keep_what_was_scored_before_an_interruption(tmp_path: Path) -> None:
    from causalguard.graphs.behaviour.score_cache import cached_scores

    keys = [(f"c{i}", "p", "q") for i in range(5)]
    calls: list[list[int]] = []
    seen: list[tuple[int, int]] = []

    def failing_after_one_chunk(idx):  # type: ignore[no-untyped-def]
        calls.append(list(idx))
        if len(calls) > 1:
            raise KeyboardInterrupt
        return [float(i) for i in idx]

    with pytest.raises(KeyboardInterrupt):
        cached_scores(tmp_path / "s.json", "v", keys, failing_after_one_chunk, chunk=2)
    again = cached_scores(
        tmp_path / "s.json",
        "v",
        keys,
        lambda idx: [float(i) for i in idx],
        chunk=2,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert again == [0.0, 1.0, 2.0, 3.0, 4.0] and calls[0] == [0, 1]
    assert seen == [(4, 5), (5, 5)]  # resumed after the saved chunk: two more chunks


def _confirmation(power: float, half: float = 0.05, degraded: int = 1) -> dict:  # type: ignore[type-arg]
    row = reply_row("x", {"power": power}, half=half, degraded=degraded)
    return {"effects": row["effects"], "quality": row["quality"]}


def test_confirmation_replaces_effects_and_keeps_only_levers_that_replicate() -> None:
    from causalguard.graphs.behaviour.confirmation_file import confirmed_catalog

    catalog = _catalog_v2()
    screened = catalog.lever("role:power:-").replies.effects["power"]  # type: ignore[union-attr]
    held = confirmed_catalog(catalog, {"role:power:-": _confirmation(-0.2)}).lever("role:power:-")
    assert held.replies is not None and held.replies.verdict == "usable" and held.replies.confirmed
    assert held.replies.effects["power"].mean == pytest.approx(-0.2) and held.replies.screening == screened
    assert "replicated" in held.replies.why
    faded = confirmed_catalog(catalog, {"role:power:-": _confirmation(-0.02)}).lever("role:power:-")
    assert faded.replies is not None and faded.replies.verdict == "no_target_effect"
    assert "did not replicate" in faded.replies.why
    degraded = confirmed_catalog(catalog, {"role:power:-": _confirmation(-0.3, degraded=30)}).lever("role:power:-")
    assert degraded.replies is not None and degraded.replies.verdict == "degrades_replies"
    # confirming twice keeps the first (selecting) measurement as the screening
    twice = confirmed_catalog(
        confirmed_catalog(catalog, {"role:power:-": _confirmation(-0.2)}), {"role:power:-": _confirmation(-0.25)}
    ).lever("role:power:-")
    assert twice.replies is not None and twice.replies.screening == screened


def test_a_confirmation_with_a_second_judge_keeps_a_lever_only_if_that_judge_sees_it_too(tmp_path: Path) -> None:
    from causalguard.graphs.behaviour.confirmation_file import CONFIRMATION_FILE, confirmed_catalog, read_confirmation

    catalog = _catalog_v2()

    def second(mean: float, half: float) -> dict:  # type: ignore[type-arg]
        return {"model": "gemma3-270m", "target": _interval(mean, half)}

    seen = confirmed_catalog(catalog, {"role:power:-": {**_confirmation(-0.2), "second_judge": second(-0.01, 0.005)}})
    assert seen.lever("role:power:-").replies.verdict == "usable"  # type: ignore[union-attr]
    assert "second judge (gemma3-270m contrast) -0.0100" in seen.lever("role:power:-").replies.why  # type: ignore[union-attr]
    for mean, half in ((-0.01, 0.02), (0.02, 0.005)):  # noise, the wrong way
        row = {**_confirmation(-0.2), "second_judge": second(mean, half)}
        unseen = confirmed_catalog(catalog, {"role:power:-": row}).lever("role:power:-").replies
        assert unseen is not None and unseen.verdict == "no_target_effect" and "second judge: not seen" in unseen.why
    dims = list(catalog.dimensions)
    bad = {**_confirmation(-0.2), "second_judge": {"model": "gemma3-270m", "target": {"mean": float("nan")}}}
    (tmp_path / CONFIRMATION_FILE).write_text(json.dumps({"levers": {"role:power:-": bad}}))
    with pytest.raises(ConfigError, match=r"levers\.role:power:-\.second_judge\.target"):
        read_confirmation(tmp_path, dims)


def test_a_check_judge_vetoes_only_a_move_it_sees_the_wrong_way(tmp_path: Path) -> None:
    from causalguard.graphs.behaviour.confirmation_file import CONFIRMATION_FILE, confirmed_catalog, read_confirmation

    catalog = _catalog_v2()
    second = {"model": "gemma3-270m", "kind": "probe", "target": _interval(-0.1, 0.05)}

    def with_check(mean: float, half: float) -> dict:  # type: ignore[type-arg]
        check = {"model": "gemma3-270m", "kind": "contrast", "target": _interval(mean, half)}
        return {**_confirmation(-0.2), "second_judge": second, "check_judges": [check]}

    for mean, half in ((-0.01, 0.005), (0.001, 0.005)):  # sees it the intended way; does not see it at all
        kept = confirmed_catalog(catalog, {"role:power:-": with_check(mean, half)}).lever("role:power:-").replies
        assert kept is not None and kept.verdict == "usable"
        assert "check judge (gemma3-270m contrast)" in kept.why
    vetoed = confirmed_catalog(catalog, {"role:power:-": with_check(0.01, 0.005)}).lever("role:power:-").replies
    assert vetoed is not None and vetoed.verdict == "no_target_effect"
    assert "check judge (gemma3-270m contrast): the wrong way" in vetoed.why
    dims = list(catalog.dimensions)
    bad = {**with_check(0.01, 0.005), "check_judges": [{"model": "gemma3-270m", "target": {"mean": 0.1}}]}
    (tmp_path / CONFIRMATION_FILE).write_text(json.dumps({"levers": {"role:power:-": bad}}))
    with pytest.raises(ConfigError, match=r"levers\.role:power:-\.check_judges\.0\.target"):
        read_confirmation(tmp_path, dims)
    unknown_kind = {**with_check(0.01, 0.005), "second_judge": {**second, "kind": "oracle"}}
    (tmp_path / CONFIRMATION_FILE).write_text(json.dumps({"levers": {"role:power:-": unknown_kind}}))
    with pytest.raises(ConfigError, match=r"second_judge\.kind"):
        read_confirmation(tmp_path, dims)


def test_a_lever_that_did_not_replicate_is_never_planned() -> None:
    from causalguard.graphs.behaviour.confirmation_file import confirmed_catalog

    bundle = _bundle()
    bundle.catalog = confirmed_catalog(
        bundle.catalog,
        {
            "role:power:-": _confirmation(-0.01),  # type: ignore[arg-type]
            "sae:f7:-0.25": _confirmation(-0.01),
        },
    )
    with pytest.raises(PlanInfeasibleError, match="no target effect"):
        plan_levers(ProfileSpec(targets={"power": TargetSpec(direction="decrease")}), bundle, LimitsSpec())


def test_a_second_judge_must_see_the_target_move_too() -> None:
    from causalguard.graphs.behaviour.validate import _verdict, render_validation

    plan = plan_levers(
        ProfileSpec(targets={"power": TargetSpec(direction="decrease")}), _bundle(), LimitsSpec(max_levers=2)
    )
    fine = {"degraded": 1, "n": 40, "baseline_degraded": 1, "baseline_n": 40, "is_degraded": False}
    measured = {"power": _interval(-0.2), "achievement": _interval(-0.1), "benevolence": _interval(0.0)}
    agrees = _verdict(plan, measured, fine, 0.8, {"power": _interval(-0.01, 0.005)})
    assert agrees["passed"] and agrees["second_judge_confirms"] == {"power": True}
    for second in ({"power": _interval(-0.01, 0.02)}, {"power": _interval(+0.02, 0.005)}):  # noise, wrong way
        verdict = _verdict(plan, measured, fine, 0.8, second)
        assert verdict["second_judge_confirms"] == {"power": False} and verdict["passed"] is False
    assert _verdict(plan, measured, fine, 0.8)["second_judge_confirms"] is None
    # a check judge vetoes a target it sees move the wrong way, and only that
    yes = {"power": _interval(-0.01, 0.005)}
    for check, passes in (
        (_interval(+0.02, 0.005), False),
        (_interval(+0.02, 0.05), True),
        (_interval(-0.02, 0.005), True),
    ):
        verdict = _verdict(plan, measured, fine, 0.8, yes, {"gemma3-270m contrast": {"power": check}})
        assert verdict["passed"] is passes and verdict["second_judge_confirms"] == {"power": passes}
        assert verdict["check_judges_oppose"] == ({} if passes else {"power": ["gemma3-270m contrast"]})
    doc = {
        "model": "fake",
        "prompts": ["a"],
        "personas": [{}],
        "units": "replies",
        "refused": {},
        "profiles": {"less-power": {**agrees, "levers": ["x"]}},
    }
    assert "-0.0100 (-0.0150, -0.0050) yes" in render_validation(doc)
    vetoed = _verdict(plan, measured, fine, 0.8, yes, {"gemma3-270m contrast": {"power": _interval(+0.02, 0.005)}})
    doc["profiles"] = {"less-power": {**vetoed, "levers": ["x"]}}
    assert "no; check gemma3-270m contrast +0.0200 (+0.0150, +0.0250) the wrong way" in render_validation(doc)
