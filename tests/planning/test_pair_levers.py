"""Pair levers: a reply-style wording and a steering vector applied together and measured as one lever.
Their ids and catalog fields, the catalog's checks, the planner planning them alone and only when usable
and runnable, the guard applying both parts (the wording, the guidance twin's wording and the vector),
the report measuring both parts, and the variants the command line builds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from causalguard.bundle.catalog import Catalog, LeverEntry
from causalguard.bundle.lever import LeverSpec
from causalguard.config.schema import LimitsSpec, ProfileSpec, TargetSpec
from causalguard.graphs.behaviour.report import with_reply_only_levers
from causalguard.graphs.levers.variants import REPLY_STYLE_WORDINGS, pair_levers, parse_directions, variant_levers
from causalguard.graphs.levers.verdicts import attach_replies
from causalguard.planning import PlanInfeasibleError, plan_levers
from tests.guard_fakes import BASELINE, fake_bundle_v2, fake_catalog_v2, reply_row

CARE, COLD = "In your reply, show care.", "In your reply, be cold."
GUIDED_PAIR = LeverSpec.pair("benevolence", CARE, "reply", 0.1, 1, scale=1.5, negative_text=COLD, scope="all")
ROLE_PAIR = LeverSpec.pair("benevolence", CARE, "reply", 0.2, 1)
BENEVOLENCE_UP = ProfileSpec(targets={"benevolence": TargetSpec(direction="increase")})


def _bundle(effects: dict[LeverSpec, float], degraded: int = 0):  # type: ignore[no-untyped-def]
    base = with_reply_only_levers(fake_catalog_v2(), list(effects))
    rows = [reply_row(s.id, {"benevolence": e}, degraded=degraded, target="benevolence") for s, e in effects.items()]
    rows += [
        reply_row(e.id, {d: x.mean for d, x in e.replies.effects.items()}, target=e.target, direction=e.direction)
        for e in base.levers
        if e.replies is not None
    ]
    bundle = fake_bundle_v2()
    bundle.catalog = attach_replies(base, rows, BASELINE)
    return bundle


def _entry(**update: Any) -> dict[str, Any]:
    catalog = with_reply_only_levers(fake_catalog_v2(), [GUIDED_PAIR])
    return {**catalog.lever(GUIDED_PAIR.id).model_dump(), **update}


def test_a_pair_lever_names_both_parts_and_keeps_them_through_the_catalog() -> None:
    assert GUIDED_PAIR.id == "pair:benevolence:+:reply:g1.5:opposite:L1:0.1:all"
    assert ROLE_PAIR.id == "pair:benevolence:+:reply:g1:L1:0.2" and ROLE_PAIR.guidance_scale is None
    down = LeverSpec.pair("benevolence", COLD, "reply", -0.1, 1, scale=2.0, source="labelled")
    assert down.direction == -1 and down.strength == -0.1 and down.vector_key == "benevolence.labelled"
    assert down.id == "pair:benevolence:-:reply:g2:plain:L1:0.1:labelled" and down.negative_text is None
    with pytest.raises(ValueError, match="non-zero vector strength"):
        LeverSpec.pair("benevolence", CARE, "reply", 0.0, 1)
    catalog = with_reply_only_levers(fake_catalog_v2(), [GUIDED_PAIR, ROLE_PAIR])
    again = Catalog.model_validate(catalog.model_dump(by_alias=True))
    entry = again.lever(GUIDED_PAIR.id)
    assert entry.kind == "pair" and entry.source == "pair" and entry.effects is None
    assert entry.spec() == GUIDED_PAIR and again.lever(ROLE_PAIR.id).spec() == ROLE_PAIR


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"text": None}, "needs its text"),
        ({"layer": None}, "needs its text \\(wording\\), target and layer"),
        ({"strength": -0.1}, "sign of its direction"),
        ({"strength": 0.0}, "sign of its direction"),
        ({"vector_name": "power.labelled"}, "for its own target"),
    ],
)
def test_the_catalog_refuses_a_pair_lever_missing_a_part(update: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LeverEntry.model_validate(_entry(**update))


def test_only_guided_and_pair_levers_carry_a_guidance_scale() -> None:
    vector = with_reply_only_levers(fake_catalog_v2(), [LeverSpec.vector("benevolence", 0.1, 1)]).levers[-1]
    with pytest.raises(ValidationError, match="only guided and pair levers have a guidance_scale"):
        LeverEntry.model_validate({**vector.model_dump(), "guidance_scale": 1.5})


def test_the_planner_plans_a_usable_pair_alone_and_the_guard_applies_both_parts(tmp_path: Path) -> None:
    from causalguard.adapters.hf.interventions import Scope
    from causalguard.adapters.hf.vectors import VectorEntry, load_vectors, save_vectors
    from causalguard.planning.explain import lever_text
    from causalguard.runtime.plan_conditions import plan_interventions

    vector = LeverSpec.vector("benevolence", 0.3, 1)
    bundle = _bundle({GUIDED_PAIR: 0.3, vector: 0.2})
    plan = plan_levers(BENEVOLENCE_UP, bundle, LimitsSpec(max_levers=3))
    assert [lever.id for lever in plan.levers] == [GUIDED_PAIR.id]  # the larger measured effect, planned alone
    assert plan.role_instructions() == [CARE]
    assert plan.guided_lever is not None and plan.guided_lever.id == GUIDED_PAIR.id
    assert plan.negative_instructions() == [COLD]
    entry = VectorEntry("benevolence", 1, torch.ones(8) / 8**0.5, 2.0)
    save_vectors(tmp_path, {"benevolence": entry}, {"model_fingerprint": "tiny", "hidden_size": 8})
    vectors = load_vectors(tmp_path, hidden_size=8, num_layers=2, fingerprint="tiny")
    (applied,) = plan_interventions(plan, None, bundle.catalog, vectors)
    assert applied.scope == Scope("all")  # type: ignore[union-attr]
    torch.testing.assert_close(applied.delta_vector, entry.direction * 0.1 * 2.0)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="steering vectors"):
        plan_interventions(plan, None, bundle.catalog, None)
    assert lever_text(bundle.catalog.lever(GUIDED_PAIR.id)) == (
        f'role prompt "{CARE}" amplified by guidance g=1.5, against "{COLD}", together with the steering vector for '
        "benevolence added on every token at layer 1, strength +0.1 (x median residual norm), measured as one lever"
    )
    # a runtime without the vectors cannot run a pair: the plain vector is not runnable either -> guided only
    with pytest.raises(PlanInfeasibleError):
        plan_levers(BENEVOLENCE_UP, bundle, LimitsSpec(max_levers=3), local_kinds=("guided",))
    role_pair = plan_levers(BENEVOLENCE_UP, _bundle({ROLE_PAIR: 0.3}), LimitsSpec())
    assert role_pair.guided_lever is None and role_pair.negative_instructions() is None
    assert role_pair.role_instructions() == [CARE]
    assert lever_text(role_pair.levers[0]) == (
        f'role prompt "{CARE}", together with the steering vector for benevolence added on generated tokens at '
        "layer 1, strength +0.2 (x median residual norm), measured as one lever"
    )


def test_the_planner_never_plans_a_pair_that_degrades_or_does_not_move_its_target() -> None:
    with pytest.raises(PlanInfeasibleError, match=GUIDED_PAIR.id.replace("+", "\\+")):
        plan_levers(BENEVOLENCE_UP, _bundle({GUIDED_PAIR: 0.5}, degraded=30), LimitsSpec())
    with pytest.raises(PlanInfeasibleError):
        plan_levers(BENEVOLENCE_UP, _bundle({GUIDED_PAIR: 0.01}), LimitsSpec())


def test_a_profile_can_ask_for_pair_levers_only() -> None:
    bundle = _bundle({GUIDED_PAIR: 0.2, LeverSpec.vector("benevolence", 0.3, 1): 0.3})
    pairs_only = ProfileSpec(targets={"benevolence": TargetSpec(direction="increase")}, method="pair")
    assert [lever.kind for lever in plan_levers(pairs_only, bundle, LimitsSpec()).levers] == ["pair"]
    assert [lever.kind for lever in plan_levers(BENEVOLENCE_UP, bundle, LimitsSpec()).levers] == ["vector"]


def test_the_report_measures_a_pair_as_its_wording_its_twin_and_its_vector(tmp_path: Path) -> None:
    from causalguard.adapters.hf.vectors import VectorEntry, load_vectors, save_vectors
    from causalguard.graphs.behaviour.report import lever_reply_condition

    entry = VectorEntry("benevolence", 1, torch.ones(8) / 8**0.5, 2.0)
    save_vectors(tmp_path, {"benevolence": entry}, {"model_fingerprint": "tiny", "hidden_size": 8})
    vectors = load_vectors(tmp_path, hidden_size=8, num_layers=2, fingerprint="tiny")
    catalog = fake_catalog_v2()
    condition = lever_reply_condition(GUIDED_PAIR, None, catalog, vectors, {})
    assert condition.instructions == (CARE,) and condition.negative_instructions == (COLD,)
    assert condition.guidance_scale == 1.5 and len(condition.interventions) == 1
    plain = lever_reply_condition(ROLE_PAIR, None, catalog, vectors, {})
    assert plain.guidance_scale is None and plain.negative_instructions == () and len(plain.interventions) == 1
    with pytest.raises(ValueError, match="steering vectors"):
        lever_reply_condition(GUIDED_PAIR, None, catalog, None, {})


def test_variants_build_pairs_per_wording_strength_and_scale_and_keep_only_the_asked_directions() -> None:
    built = pair_levers({"power": 12, "security.labelled": 10}, [0.1], [1.0, 1.5], ("all",))
    assert [lever.id for lever in built] == [
        "pair:power:+:reply:g1:L12:0.1:all",
        "pair:power:+:reply:g1.5:opposite:L12:0.1:all",
        "pair:power:-:reply:g1:L12:0.1:all",
        "pair:power:-:reply:g1.5:opposite:L12:0.1:all",
        "pair:security:+:reply:g1:L10:0.1:all:labelled",
        "pair:security:+:reply:g1.5:opposite:L10:0.1:all:labelled",
        "pair:security:-:reply:g1:L10:0.1:all:labelled",
        "pair:security:-:reply:g1.5:opposite:L10:0.1:all:labelled",
    ]
    down = built[3]
    assert down.text == REPLY_STYLE_WORDINGS["power"][1] and down.negative_text == REPLY_STYLE_WORDINGS["power"][0]
    assert down.strength == -0.1 and down.direction == -1
    catalog = fake_catalog_v2()
    wanted = parse_directions("power-, benevolence+", catalog.dimensions)
    assert wanted == {("power", -1), ("benevolence", 1)}
    levers, sources = variant_levers(
        catalog,
        None,
        False,
        None,
        guided="1.5",
        pairs="0.1",
        pair_guidance="1,2",
        vector_layers={"power": 3, "benevolence": 4},
        directions=wanted,
    )
    assert {(lever.target, lever.direction) for lever in levers} == wanted
    assert sorted(sources.values()) == ["guided", "guided", "pair", "pair", "pair", "pair"]
    for kwargs, message in (
        ({"pairs": "0.1"}, "--pairs: the bundle has no steering vectors"),
        ({"pairs": "-0.1", "vector_layers": {"power": 3}}, "--pairs: vector strengths are magnitudes"),
        ({"pairs": "0.1", "pair_guidance": "0.5", "vector_layers": {"power": 3}}, "--pair-guidance: guidance"),
        ({"pairs": "0.1", "vector_layers": {"power": 3}, "vector_scope": "prompt"}, "--vector-scope"),
    ):
        with pytest.raises(ValueError, match=message):
            variant_levers(catalog, None, False, None, **kwargs)  # type: ignore[arg-type]
    for bad in ("power", "power*", "loyalty+", " , "):
        with pytest.raises(ValueError, match="--directions"):
            parse_directions(bad, catalog.dimensions)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--pairs", "0.1", "--directions", "loyalty+"], "--directions"),
        (["--pairs", "0", "--vector-source", "replies"], "--pairs"),
        (["--pairs", "0.1", "--pair-guidance", "0.5"], "--pair-guidance"),
    ],
)
def test_the_report_names_a_bad_pair_option_before_any_model_loads(args: list[str], option: str) -> None:
    from typer.testing import CliRunner

    from causalguard.cli import app

    shipped = "graphs/causalguard/graphs/smollm2-135m-instruct"
    result = CliRunner().invoke(app, ["behaviour", "report", "--bundle", shipped, "--levers", "none", *args])
    assert result.exit_code == 2 and option in result.output, result.output
