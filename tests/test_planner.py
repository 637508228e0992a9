"""Planning levers with a catalog and a graph: feasible plans, infeasible ones explained, caps."""

import math

import pytest
from causalguard.config.schema import LimitsSpec, ProfileSpec, ProtectedSpec, TargetSpec
from causalguard.planning import PlanInfeasibleError, plan_levers
from causalguard.planning.explain import explain_plan

from tests.guard_fakes import fake_bundle, fake_catalog


def _profile(**kwargs) -> ProfileSpec:  # type: ignore[no-untyped-def]
    return ProfileSpec(**kwargs)


def test_less_power_picks_the_strongest_role_lever_without_protection() -> None:
    plan = plan_levers(_profile(targets={"power": TargetSpec(direction="decrease")}), fake_catalog(), fake_bundle(),
                       LimitsSpec(max_levers=1))
    # f9 is stronger but its perplexity ratio 3.0 is over the 1.5 cap
    assert [lever.id for lever in plan.levers] == ["role:power:-"]
    assert plan.forecast_for("power").change == pytest.approx(-0.30)
    assert plan.forecast_for("achievement").change == pytest.approx(-0.20)
    # graph forecast: power's change propagated along power -> achievement (total effect 0.6)
    assert plan.forecast_for("achievement").graph_change == pytest.approx(-0.30 * 0.6)
    assert math.isinf(plan.goals["power"]) and plan.goals["power"] < 0


def test_protecting_achievement_switches_to_the_specific_sae_feature() -> None:
    profile = _profile(targets={"power": TargetSpec(direction="decrease")},
                       protected={"achievement": ProtectedSpec(tolerance=0.05)})
    plan = plan_levers(profile, fake_catalog(), fake_bundle(), LimitsSpec(max_levers=1))
    assert [lever.id for lever in plan.levers] == ["sae:f7:-0.5"]
    assert abs(plan.forecast_for("achievement").change) <= 0.05
    text = explain_plan(plan, fake_catalog())
    assert "sae:f7:-0.5" in text and "achievement" in text and "tolerance 0.05" in text


def test_a_desired_change_is_matched_not_maximised() -> None:
    plan = plan_levers(_profile(targets={"power": TargetSpec(change=-0.15)}), fake_catalog(), fake_bundle(),
                       LimitsSpec(max_levers=2))
    assert [lever.id for lever in plan.levers] == ["sae:f7:-0.5"]


def test_role_only_with_protection_is_infeasible_and_names_the_graph_path() -> None:
    profile = _profile(targets={"power": TargetSpec(direction="decrease")},
                       protected={"achievement": ProtectedSpec(tolerance=0.05)}, method="role")
    with pytest.raises(PlanInfeasibleError) as caught:
        plan_levers(profile, fake_catalog(), fake_bundle(), LimitsSpec())
    assert caught.value.conflicts == ["achievement"]
    assert "power -> achievement" in str(caught.value) and "tolerance" in str(caught.value)


def test_sae_levers_are_not_planned_without_a_local_model() -> None:
    profile = _profile(targets={"power": TargetSpec(direction="decrease")},
                       protected={"achievement": ProtectedSpec(tolerance=0.05)})
    with pytest.raises(PlanInfeasibleError):
        plan_levers(profile, fake_catalog(), fake_bundle(), LimitsSpec(), sae_available=False)
    with pytest.raises(PlanInfeasibleError, match="no lever passes method=sae"):
        plan_levers(_profile(targets={"power": TargetSpec(direction="decrease")}, method="sae"), fake_catalog(),
                    fake_bundle(), LimitsSpec(), sae_available=False)


def test_two_targets_combine_compatible_levers() -> None:
    profile = _profile(targets={"power": TargetSpec(direction="decrease"),
                                "benevolence": TargetSpec(direction="increase")})
    plan = plan_levers(profile, fake_catalog(), fake_bundle(), LimitsSpec(max_levers=2))
    ids = {lever.id for lever in plan.levers}
    assert "role:benevolence:+" in ids and len(ids) == 2
    assert plan.forecast_for("benevolence").change > 0 and plan.forecast_for("power").change < 0


def test_no_targets_means_no_levers() -> None:
    plan = plan_levers(_profile(), fake_catalog(), fake_bundle(), LimitsSpec())
    assert plan.levers == () and "unguarded" in plan.reasons[0]


def test_a_score_target_counts_from_the_catalog_baseline() -> None:
    plan = plan_levers(_profile(targets={"benevolence": TargetSpec(score=0.35)}), fake_catalog(), fake_bundle(),
                       LimitsSpec(max_levers=1))
    assert plan.goals["benevolence"] == pytest.approx(0.25)
    assert [lever.id for lever in plan.levers] == ["role:benevolence:+"]
