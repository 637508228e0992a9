"""Planning levers with a catalog and a graph: feasible plans, infeasible ones explained, caps."""

import math
from pathlib import Path

import pytest

from causalguard.bundle.behaviour import BehaviourSummary, LeverBehaviour
from causalguard.config.schema import LimitsSpec, ProfileSpec, ProtectedSpec, TargetSpec
from causalguard.judging.reply_quality import QualityCalibration
from causalguard.planning import PlanInfeasibleError, plan_levers
from causalguard.planning.explain import explain_plan
from tests.guard_fakes import fake_bundle, fake_catalog


def _profile(**kwargs) -> ProfileSpec:  # type: ignore[no-untyped-def]
    return ProfileSpec(**kwargs)


def test_less_power_picks_the_strongest_role_lever_without_protection() -> None:
    plan = plan_levers(
        _profile(targets={"power": TargetSpec(direction="decrease")}), fake_bundle(), LimitsSpec(max_levers=1)
    )
    # f9 is stronger but its perplexity ratio 3.0 is over the 1.5 cap
    assert [lever.id for lever in plan.levers] == ["role:power:-"]
    assert plan.forecast_for("power").change == pytest.approx(-0.30)
    assert plan.forecast_for("achievement").change == pytest.approx(-0.20)
    # graph forecast: power's change propagated along power -> achievement (total effect 0.6)
    assert plan.forecast_for("achievement").graph_change == pytest.approx(-0.30 * 0.6)
    assert math.isinf(plan.goals["power"]) and plan.goals["power"] < 0
    label = "graph held-out AUROC 0.800 (95% CI 0.70-0.90) beats the best baseline (correlation 0.600"
    assert label in plan.graph_label


def test_a_graph_that_does_not_beat_its_baselines_forecasts_nothing() -> None:
    bundle = fake_bundle()
    bundle.doc["evaluation"]["leave_one_lever_out"]["predictors"]["correlation"]["auroc"] = 0.85
    plan = plan_levers(_profile(targets={"power": TargetSpec(direction="decrease")}), bundle, LimitsSpec(max_levers=1))
    assert all(f.graph_change is None for f in plan.forecast)
    assert "does not beat the best baseline (correlation 0.850" in plan.graph_label
    text = explain_plan(plan, fake_catalog())
    assert "not used for side effects" in text and "[graph" not in text
    # the measured lever effects still forecast side effects
    assert plan.forecast_for("achievement").change == pytest.approx(-0.20)


@pytest.mark.parametrize(
    ("interval", "why"),
    [([0.44, 0.59], "its interval includes chance (0.5)"), (None, "has no interval to tell it from chance")],
)
def test_a_graph_ahead_of_its_baselines_by_chance_forecasts_nothing(interval: list[float] | None, why: str) -> None:
    bundle = fake_bundle()  # Gemma 3 270M's figures: graph 0.515 (0.44-0.59), random graphs 0.508
    predictors = bundle.doc["evaluation"]["leave_one_lever_out"]["predictors"]
    predictors["graph"] = {"auroc": 0.515, "auroc_ci": interval}
    predictors["correlation"]["auroc"] = 0.508
    plan = plan_levers(_profile(targets={"power": TargetSpec(direction="decrease")}), bundle, LimitsSpec(max_levers=1))
    assert all(f.graph_change is None for f in plan.forecast)
    assert f"beats the best baseline (correlation 0.508; leave-one-lever-out, 6 levers) but {why}" in plan.graph_label
    assert "not used for side effects" in plan.graph_label


def test_protecting_achievement_switches_to_the_specific_sae_feature() -> None:
    profile = _profile(
        targets={"power": TargetSpec(direction="decrease")}, protected={"achievement": ProtectedSpec(tolerance=0.05)}
    )
    plan = plan_levers(profile, fake_bundle(), LimitsSpec(max_levers=1))
    assert [lever.id for lever in plan.levers] == ["sae:f7:-0.5"]
    assert abs(plan.forecast_for("achievement").change) <= 0.05
    text = explain_plan(plan, fake_catalog())
    assert "sae:f7:-0.5" in text and "achievement" in text and "tolerance 0.05" in text


def test_a_desired_change_is_matched_not_maximised() -> None:
    plan = plan_levers(_profile(targets={"power": TargetSpec(change=-0.15)}), fake_bundle(), LimitsSpec(max_levers=2))
    assert [lever.id for lever in plan.levers] == ["sae:f7:-0.5"]


def test_role_only_with_protection_is_infeasible_and_names_the_graph_path() -> None:
    profile = _profile(
        targets={"power": TargetSpec(direction="decrease")},
        protected={"achievement": ProtectedSpec(tolerance=0.05)},
        method="role",
    )
    with pytest.raises(PlanInfeasibleError) as caught:
        plan_levers(profile, fake_bundle(), LimitsSpec())
    assert caught.value.conflicts == ["achievement"]
    assert "power -> achievement" in str(caught.value) and "tolerance" in str(caught.value)


def test_sae_levers_are_not_planned_without_a_local_model() -> None:
    profile = _profile(
        targets={"power": TargetSpec(direction="decrease")}, protected={"achievement": ProtectedSpec(tolerance=0.05)}
    )
    with pytest.raises(PlanInfeasibleError):
        plan_levers(profile, fake_bundle(), LimitsSpec(), sae_available=False)
    with pytest.raises(PlanInfeasibleError, match="no lever passes method=sae"):
        plan_levers(
            _profile(targets={"power": TargetSpec(direction="decrease")}, method="sae"),
            fake_bundle(),
            LimitsSpec(),
            sae_available=False,
        )


def test_two_targets_combine_compatible_levers() -> None:
    profile = _profile(
        targets={"power": TargetSpec(direction="decrease"), "benevolence": TargetSpec(direction="increase")}
    )
    plan = plan_levers(profile, fake_bundle(), LimitsSpec(max_levers=2))
    ids = {lever.id for lever in plan.levers}
    assert "role:benevolence:+" in ids and len(ids) == 2
    assert plan.forecast_for("benevolence").change > 0 and plan.forecast_for("power").change < 0


def test_no_targets_means_no_levers() -> None:
    plan = plan_levers(_profile(), fake_bundle(), LimitsSpec())
    assert plan.levers == () and "unguarded" in plan.reasons[0]


def test_a_score_target_counts_from_the_catalog_baseline() -> None:
    plan = plan_levers(
        _profile(targets={"benevolence": TargetSpec(score=0.35)}), fake_bundle(), LimitsSpec(max_levers=1)
    )
    assert plan.goals["benevolence"] == pytest.approx(0.25)
    assert [lever.id for lever in plan.levers] == ["role:benevolence:+"]


PROFILE_LESS_POWER = ProfileSpec(targets={"power": TargetSpec(direction="decrease")})


def _behaviour(degrading: set[str], measured: set[str] | None = None) -> BehaviourSummary:
    catalog = fake_catalog()
    ids = measured if measured is not None else {lever.id for lever in catalog.levers}
    levers = {
        i: LeverBehaviour(i, {"power": (-0.3, -0.5, -0.1)}, True, i in degrading, 0.9 if i in degrading else 0.1)
        for i in ids
    }
    return BehaviourSummary(Path("behaviour.json"), QualityCalibration(40, 0.1, 0.8, 5.0, 0.2, 0.0, 0.1), (), levers)


def test_levers_whose_replies_degrade_are_never_planned() -> None:
    bundle = fake_bundle()
    bundle.behaviour = _behaviour({"role:power:-"})
    plan = plan_levers(PROFILE_LESS_POWER, bundle, LimitsSpec(max_levers=1))
    assert [lever.id for lever in plan.levers] != ["role:power:-"]
    assert any("never planned, their replies degrade: role:power:-" in r for r in plan.reasons)
    assert any("in replies (judge units): power -0.30" in r for r in plan.reasons)


def test_unmeasured_levers_are_not_planned_and_an_all_degrading_profile_is_infeasible() -> None:
    bundle = fake_bundle()
    bundle.behaviour = _behaviour(set(), measured={"role:benevolence:+"})
    with pytest.raises(PlanInfeasibleError, match=r"reply quality.*role:power:- \(not measured on replies\)"):
        plan_levers(PROFILE_LESS_POWER, bundle, LimitsSpec(max_levers=1))
    bundle.behaviour = _behaviour({"role:power:-", "sae:f7:-0.5", "sae:f9:-0.5"})
    with pytest.raises(PlanInfeasibleError, match=r"role:power:- \(degrades replies \(90%"):
        plan_levers(PROFILE_LESS_POWER, bundle, LimitsSpec(max_levers=1))
