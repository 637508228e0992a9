"""Guided and vector levers in the catalog, the planner and the guard: measured on replies only, planned
only when their verdict is usable, never in survey units or proxy mode, one guided lever per plan, and
the guard generates a planned guided lever with its twin; reply quality flags recitation and the same
speech for every user."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from causalguard.bundle.catalog import Catalog, LeverEntry
from causalguard.bundle.lever import LeverSpec
from causalguard.config.schema import LimitsSpec, ProfileSpec, TargetSpec
from causalguard.graphs.behaviour.report import with_reply_only_levers
from causalguard.graphs.levers.variants import guided_levers, variant_levers, vector_levers
from causalguard.graphs.levers.verdicts import attach_replies
from causalguard.judging.reply_quality import QualityCalibration, ReplyQuality, cross_prompt_sameness, recited_trigrams
from causalguard.planning import PlanInfeasibleError, plan_levers
from tests.guard_fakes import BASELINE, fake_bundle_v2, fake_catalog_v2, reply_row

GUIDED = LeverSpec.guided("benevolence", 1, "In your reply, show care.", 2.0, "In your reply, be cold.", "reply")
VECTOR = LeverSpec.vector("benevolence", 0.5, 1)


def _catalog(rows: list[dict[str, Any]]) -> Catalog:
    base = fake_catalog_v2()
    wording = LeverSpec(
        id="role:benevolence:+:test", kind="role", target="benevolence", direction=1, strength=1.0, text="Be kind."
    )
    added = with_reply_only_levers(base, [GUIDED, VECTOR, wording])
    kept = {e.id: e for e in base.levers}
    rows = rows + [
        reply_row(e.id, {d: x.mean for d, x in e.replies.effects.items()}, target=e.target, direction=e.direction)
        for e in kept.values()
        if e.replies is not None
    ]
    return attach_replies(added, rows, BASELINE)


def _bundle(rows: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
    bundle = fake_bundle_v2()
    bundle.catalog = _catalog(rows)
    return bundle


BENEVOLENCE_UP = ProfileSpec(targets={"benevolence": TargetSpec(direction="increase")})


def test_reply_only_levers_join_the_catalog_without_survey_effects() -> None:
    catalog = _catalog([reply_row(GUIDED.id, {"benevolence": 0.3}, target="benevolence")])
    guided = catalog.lever(GUIDED.id)
    assert guided.kind == "guided" and guided.effects is None and guided.fluency is None
    assert guided.guidance_scale == 2.0 and guided.negative_text == "In your reply, be cold."
    assert guided.replies is not None and guided.replies.verdict == "usable"
    assert catalog.lever(VECTOR.id).replies is None  # not measured on replies: never planned
    assert "role:benevolence:+:test" not in {e.id for e in catalog.levers}  # role wordings need the survey
    Catalog.model_validate(catalog.model_dump(by_alias=True))  # round-trips


def test_lever_entries_of_each_kind_need_their_fields() -> None:
    entry = fake_catalog_v2().levers[0].model_dump()
    with pytest.raises(ValidationError, match="measured on replies only"):
        LeverEntry.model_validate({**entry, "id": "g", "kind": "guided", "guidance_scale": 2.0})
    with pytest.raises(ValidationError, match="needs its text and guidance_scale"):
        LeverEntry.model_validate(
            {**entry, "id": "g", "kind": "guided", "effects": None, "counts": None, "fluency": None}
        )
    with pytest.raises(ValidationError, match="needs its target and layer"):
        LeverEntry.model_validate(
            {**entry, "id": "v", "kind": "vector", "effects": None, "counts": None, "fluency": None, "text": None}
        )
    with pytest.raises(ValidationError, match="needs its survey effects"):
        LeverEntry.model_validate({**entry, "effects": None})
    with pytest.raises(ValidationError, match="needs its text"):
        LeverEntry.model_validate({**entry, "text": None})
    with pytest.raises(ValidationError):
        LeverEntry.model_validate(
            {
                **entry,
                "id": "g",
                "kind": "guided",
                "effects": None,
                "counts": None,
                "fluency": None,
                "guidance_scale": float("nan"),
            }
        )


def test_the_planner_plans_a_guided_lever_only_when_usable() -> None:
    usable = _bundle(
        [
            reply_row(GUIDED.id, {"benevolence": 0.3, "power": -0.02}, target="benevolence"),
            reply_row(VECTOR.id, {"benevolence": 0.2}, target="benevolence"),
        ]
    )
    plan = plan_levers(BENEVOLENCE_UP, usable, LimitsSpec(max_levers=2))
    kinds = sorted(lever.kind for lever in plan.levers)
    assert kinds == ["guided"] and plan.guided_lever is not None  # planned alone: never measured as a pair
    assert plan.role_instructions() == ["In your reply, show care."]
    assert plan.negative_instructions() == ["In your reply, be cold."]
    assert plan.forecast_for("benevolence").survey_change is None  # no survey effects to add up
    # no runtime for guided/vector levers (proxy mode): refused, since the role lever does not move it
    with pytest.raises(PlanInfeasibleError):
        plan_levers(BENEVOLENCE_UP, usable, LimitsSpec(max_levers=2), local_kinds=())
    survey = plan_levers(BENEVOLENCE_UP, usable, LimitsSpec(max_levers=2), units="survey")
    assert {lever.kind for lever in survey.levers} <= {"role", "sae"}  # no survey effects: never in survey units
    vector_only = plan_levers(BENEVOLENCE_UP, usable, LimitsSpec(max_levers=2), local_kinds=("vector",))
    assert [lever.kind for lever in vector_only.levers] == ["vector"]
    degrading = _bundle([reply_row(GUIDED.id, {"benevolence": 0.5}, degraded=30, target="benevolence")])
    with pytest.raises(PlanInfeasibleError):
        plan_levers(BENEVOLENCE_UP, degrading, LimitsSpec(max_levers=2))
    not_moving = _bundle([reply_row(GUIDED.id, {"benevolence": 0.01}, target="benevolence")])
    with pytest.raises(PlanInfeasibleError):
        plan_levers(BENEVOLENCE_UP, not_moving, LimitsSpec(max_levers=2))


def _benevolence_levers(effects: dict[LeverSpec, float]) -> Catalog:
    """The fake catalog plus ``effects``' benevolence-up levers, each measured moving benevolence so much."""
    base = with_reply_only_levers(fake_catalog_v2(), list(effects))
    rows = [reply_row(spec.id, {"benevolence": e}, target="benevolence") for spec, e in effects.items()]
    rows += [
        reply_row(e.id, {d: x.mean for d, x in e.replies.effects.items()}, target=e.target, direction=e.direction)
        for e in base.levers
        if e.replies is not None
    ]
    return attach_replies(base, rows, BASELINE)


def test_guided_and_vector_levers_are_planned_alone() -> None:
    other = LeverSpec.guided("benevolence", 1, "In your reply, be kind.", 3.0, None, "kind")
    bundle = fake_bundle_v2()
    bundle.catalog = _benevolence_levers({GUIDED: 0.3, other: 0.3})
    plan = plan_levers(BENEVOLENCE_UP, bundle, LimitsSpec(max_levers=3))
    assert len(plan.levers) == 1 and plan.levers[0].kind == "guided"
    assert other.negative_text is None and other.id.endswith(":plain")


def test_variants_build_guided_and_vector_levers_and_refuse_bad_options() -> None:
    levers = guided_levers(["benevolence", "power"], [1.5, 2.0], "both")
    assert len(levers) == 2 * 2 * 2 * 2
    assert {lever.negative_text is None for lever in levers} == {True, False}
    assert [lever.id for lever in vector_levers({"power": 12}, [0.5, -0.5])] == [
        "vector:power:+:L12:0.5",
        "vector:power:-:L12:0.5",
    ]
    catalog = fake_catalog_v2()
    for kwargs, message in (
        ({"guided": "0.5"}, "must be in"),
        ({"guided": "x"}, "comma-separated"),
        ({"vectors": "0.5"}, "no steering vectors"),
        ({"vectors": "0,1", "vector_layers": {"power": 1}}, "non-zero"),
        ({"guided": "nan"}, "finite"),
    ):
        with pytest.raises(ValueError, match=message):
            variant_levers(catalog, None, False, None, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="opposite"):
        guided_levers(["power"], [2.0], "sideways")


def test_recitation_and_the_same_speech_are_degraded() -> None:
    system = "You are a helpful assistant.\n\nIn your reply, show care for the people around the user."
    recites = "Here is an answer. In your reply, show care for the people around the user, which means kindness."
    fine = "You could call her tonight and ask how she is doing; small gestures help."
    assert recited_trigrams(recites, system, "How do I help my friend?") >= 5
    assert recited_trigrams(fine, system, "How do I help my friend?") == 0
    speech = "Benevolence is the most important value: always care for others and be kind to everyone."
    replies = [speech, speech, "Try a new recipe with seasonal vegetables.", "Ask for a raise with evidence."]
    same = cross_prompt_sameness(replies, ["lever", "lever", "none", "none"], ["a", "b", "a", "b"])
    assert same[0] == same[1] == 1.0 and same[2] < 0.2 and same[3] < 0.2
    base = [ReplyQuality(0.0, 1.0, 3.0, 0.5, 20, False, recited=k % 2, sameness=0.05) for k in range(20)]
    calibration = QualityCalibration.fit(base)
    assert calibration.max_recited == 1 and calibration.max_sameness == pytest.approx(0.2)
    assert "recites_instruction" in calibration.flags(ReplyQuality(0.0, 1.0, 3.0, 0.5, 20, False, recited=5))
    assert "same_speech" in calibration.flags(ReplyQuality(0.0, 1.0, 3.0, 0.5, 20, False, sameness=0.9))
    assert not calibration.flags(base[1])


def test_explain_says_what_guided_and_vector_levers_do() -> None:
    from causalguard.planning.explain import lever_text

    usable = _bundle(
        [
            reply_row(GUIDED.id, {"benevolence": 0.3}, target="benevolence"),
            reply_row(VECTOR.id, {"benevolence": 0.2}, target="benevolence"),
        ]
    )
    catalog = usable.catalog
    assert lever_text(catalog.lever(GUIDED.id)) == (
        'role prompt "In your reply, show care." amplified by guidance g=2, against "In your reply, be cold."'
    )
    assert lever_text(catalog.lever(VECTOR.id)) == (
        "steering vector for benevolence added on generated tokens at layer 1, strength +0.5 (x median residual norm)"
    )


def test_a_runtime_runs_the_local_kinds_whose_artifacts_it_loaded() -> None:
    from causalguard.planning.planner import runnable_kinds

    assert runnable_kinds(local_model=False, sae_loaded=True, vectors_loaded=True) == set()
    assert runnable_kinds(local_model=True, sae_loaded=False, vectors_loaded=True) == {"guided", "vector", "pair"}
    assert runnable_kinds(local_model=True, sae_loaded=True, vectors_loaded=False) == {"guided", "sae"}


ADAPTER = LeverSpec.value_adapter("benevolence", 1, "benevolence-up", 1.0)


def test_the_planner_plans_an_adapter_lever_only_when_usable_and_loaded() -> None:
    bundle = fake_bundle_v2()
    base = with_reply_only_levers(fake_catalog_v2(), [ADAPTER])
    entry = base.lever(ADAPTER.id)
    assert entry.kind == "adapter" and entry.adapter == "benevolence-up" and entry.effects is None
    assert ADAPTER.id == "adapter:benevolence:+:benevolence-up:s1"
    kept = [
        reply_row(e.id, {d: x.mean for d, x in e.replies.effects.items()}, target=e.target, direction=e.direction)
        for e in base.levers
        if e.replies is not None
    ]
    bundle.catalog = attach_replies(
        base, [reply_row(ADAPTER.id, {"benevolence": 0.3}, target="benevolence"), *kept], BASELINE
    )
    plan = plan_levers(BENEVOLENCE_UP, bundle, LimitsSpec(max_levers=2), local_kinds=("adapter",))
    assert [lever.kind for lever in plan.levers] == ["adapter"]  # planned alone, like guided and vector levers
    from causalguard.planning.explain import lever_text

    assert lever_text(plan.levers[0]).startswith("value adapter benevolence-up")
    with pytest.raises(PlanInfeasibleError):  # adapters not loaded (proxy mode, or a bundle without them)
        plan_levers(BENEVOLENCE_UP, bundle, LimitsSpec(max_levers=2), local_kinds=("vector",))
    degrading = fake_bundle_v2()
    degrading.catalog = attach_replies(
        base, [reply_row(ADAPTER.id, {"benevolence": 0.5}, degraded=30, target="benevolence"), *kept], BASELINE
    )
    with pytest.raises(PlanInfeasibleError):
        plan_levers(BENEVOLENCE_UP, degrading, LimitsSpec(max_levers=2), local_kinds=("adapter",))
    entry_doc = entry.model_dump()
    with pytest.raises(ValidationError, match="adapter folder"):
        LeverEntry.model_validate({**entry_doc, "adapter": None})
    with pytest.raises(ValidationError):
        LeverEntry.model_validate({**entry_doc, "adapter": "../etc"})
    with pytest.raises(ValidationError, match="scale"):
        LeverEntry.model_validate({**entry_doc, "strength": 9.0})


def test_variants_build_adapter_levers_from_the_bundles_adapters() -> None:
    levers, sources = variant_levers(
        fake_catalog_v2(), None, False, None, adapters="1,0.5", adapter_targets={"power-down": ("power", -1)}
    )
    assert [lever.id for lever in levers] == ["adapter:power:-:power-down:s1", "adapter:power:-:power-down:s0.5"]
    assert set(sources.values()) == {"adapter"}
    with pytest.raises(ValueError, match="no value adapters"):
        variant_levers(fake_catalog_v2(), None, False, None, adapters="1")
    with pytest.raises(ValueError, match="within"):
        variant_levers(
            fake_catalog_v2(), None, False, None, adapters="5", adapter_targets={"power-down": ("power", -1)}
        )


ALL_TOKENS_VECTOR = LeverSpec.vector("benevolence", 0.5, 1, "all")


def test_an_all_token_vector_lever_is_its_own_lever_and_keeps_its_scope_through_the_catalog() -> None:
    from causalguard.planning.explain import lever_text

    assert ALL_TOKENS_VECTOR.id == "vector:benevolence:+:L1:0.5:all" and ALL_TOKENS_VECTOR.vector_tokens == "all"
    assert VECTOR.vector_scope is None and VECTOR.vector_tokens == "generated"  # old ids and catalogs unchanged
    assert [lever.id for lever in vector_levers({"power": 12}, [0.5], ("generated", "all"))] == [
        "vector:power:+:L12:0.5",
        "vector:power:+:L12:0.5:all",
    ]
    catalog = with_reply_only_levers(fake_catalog_v2(), [VECTOR, ALL_TOKENS_VECTOR])
    again = Catalog.model_validate(catalog.model_dump(by_alias=True))
    entry = again.lever(ALL_TOKENS_VECTOR.id)
    assert entry.vector_scope == "all" and entry.spec() == ALL_TOKENS_VECTOR
    assert again.lever(VECTOR.id).vector_tokens == "generated"
    assert "added on every token at layer 1" in lever_text(entry)
    role = fake_catalog_v2().levers[0].model_dump()
    with pytest.raises(ValidationError, match="only vector and pair levers have a vector_scope"):
        LeverEntry.model_validate({**role, "vector_scope": "all"})
    with pytest.raises(ValidationError):
        LeverEntry.model_validate({**entry.model_dump(), "vector_scope": "prompt"})
    with pytest.raises(ValueError, match="--vector-scope"):
        variant_levers(
            fake_catalog_v2(), None, False, None, vectors="0.5", vector_layers={"power": 1}, vector_scope="prompt"
        )
    both, _ = variant_levers(
        fake_catalog_v2(), None, False, None, vectors="0.5", vector_layers={"power": 1}, vector_scope="both"
    )
    assert [lever.vector_tokens for lever in both] == ["generated", "all"]


def test_the_guard_applies_a_planned_vector_lever_on_its_own_tokens(tmp_path: Path) -> None:
    import torch

    from causalguard.adapters.hf.interventions import Scope
    from causalguard.adapters.hf.vectors import VectorEntry, load_vectors, save_vectors
    from causalguard.planning.planner import Plan
    from causalguard.runtime.plan_conditions import plan_interventions

    entry = VectorEntry("benevolence", 1, torch.ones(8) / 8**0.5, 2.0)
    save_vectors(tmp_path, {"benevolence": entry}, {"model_fingerprint": "tiny", "hidden_size": 8})
    vectors = load_vectors(tmp_path, hidden_size=8, num_layers=2, fingerprint="tiny")
    catalog = with_reply_only_levers(fake_catalog_v2(), [VECTOR, ALL_TOKENS_VECTOR])
    for lever, scope in ((VECTOR, "generated"), (ALL_TOKENS_VECTOR, "all")):
        plan = Plan("p", (catalog.lever(lever.id),), {}, ())
        (applied,) = plan_interventions(plan, None, catalog, vectors)
        assert applied.scope == Scope(scope)  # type: ignore[union-attr]


def test_a_screened_lever_never_outbids_one_whose_effect_was_measured_again() -> None:
    from causalguard.bundle.catalog import HeldOut, Interval
    from causalguard.planning.evidence import best_evidenced, evidence_rank

    strong, middle, weak = (LeverSpec.vector("benevolence", s, 1, "all") for s in (0.6, 0.4, 0.2))
    bundle = fake_bundle_v2()
    catalog = _benevolence_levers({strong: 0.6, middle: 0.4, weak: 0.2})
    screening = Interval(mean=0.5, ci_low=0.4, ci_high=0.6, n=40)
    held_out = HeldOut(mean=0.1, ci_low=0.05, ci_high=0.15, n=80, level=0.95, looks=["v.json"], passed=True)

    def with_evidence(catalog: Catalog, lever_id: str, **update: Any) -> Catalog:
        levers = [
            e.model_copy(update={"replies": e.replies.model_copy(update=update)}) if e.id == lever_id else e
            for e in catalog.levers
        ]
        return catalog.model_copy(update={"levers": levers})

    bundle.catalog = catalog  # all three screened only: the largest effect wins
    assert [lever.id for lever in plan_levers(BENEVOLENCE_UP, bundle, LimitsSpec(max_levers=1)).levers] == [strong.id]

    bundle.catalog = with_evidence(catalog, middle.id, screening=screening)  # confirmed beats screened
    plan = plan_levers(BENEVOLENCE_UP, bundle, LimitsSpec(max_levers=1))
    assert [lever.id for lever in plan.levers] == [middle.id]
    assert any(f"{strong.id} (screened only, where another lever confirmed" in r for r in plan.reasons)

    bundle.catalog = with_evidence(bundle.catalog, weak.id, screening=screening, held_out=held_out)
    plan = plan_levers(BENEVOLENCE_UP, bundle, LimitsSpec(max_levers=1))  # a passed held-out test beats both
    assert [lever.id for lever in plan.levers] == [weak.id]
    ranks = {e.id: evidence_rank(e) for e in bundle.catalog.levers if e.id in (strong.id, middle.id, weak.id)}
    assert ranks == {strong.id: 0, middle.id: 1, weak.id: 2}
    failed = held_out.model_copy(update={"passed": False})  # a failed test counts for nothing more than a screen
    entry = with_evidence(bundle.catalog, weak.id, held_out=failed, verdict="failed_held_out").lever(weak.id)
    assert evidence_rank(entry) == 1
    kept, aside = best_evidenced([bundle.catalog.lever(strong.id)])  # alone, a screened lever is still planned
    assert [e.id for e in kept] == [strong.id] and aside == {}


def test_a_labelled_vector_lever_names_its_own_direction_and_the_guard_applies_that_one(tmp_path: Path) -> None:
    import torch

    from causalguard.adapters.hf.vectors import VectorEntry, load_vectors, save_vectors
    from causalguard.planning.planner import Plan
    from causalguard.runtime.plan_conditions import plan_interventions

    (labelled,) = vector_levers({"benevolence.labelled": 1}, [0.5], ("all",))
    assert labelled.id == "vector:benevolence:+:L1:0.5:all:labelled" and labelled.target == "benevolence"
    assert labelled.vector_name == "benevolence.labelled" and labelled.vector_key == "benevolence.labelled"
    assert ALL_TOKENS_VECTOR.vector_name is None and ALL_TOKENS_VECTOR.vector_key == "benevolence"
    replies_direction, labelled_direction = torch.zeros(8), torch.zeros(8)
    replies_direction[0], labelled_direction[1] = 1.0, 1.0
    entries = {
        "benevolence": VectorEntry("benevolence", 1, replies_direction, 2.0),
        "benevolence.labelled": VectorEntry("benevolence.labelled", 1, labelled_direction, 2.0),
    }
    save_vectors(tmp_path, entries, {"model_fingerprint": "tiny", "hidden_size": 8})
    vectors = load_vectors(tmp_path, hidden_size=8, num_layers=2, fingerprint="tiny")
    catalog = with_reply_only_levers(fake_catalog_v2(), [ALL_TOKENS_VECTOR, labelled])
    again = Catalog.model_validate(catalog.model_dump(by_alias=True))
    assert again.lever(labelled.id).spec() == labelled
    for lever, direction in ((ALL_TOKENS_VECTOR, replies_direction), (labelled, labelled_direction)):
        (applied,) = plan_interventions(Plan("p", (again.lever(lever.id),), {}, ()), None, again, vectors)
        torch.testing.assert_close(applied.delta_vector, direction * 0.5 * 2.0)  # type: ignore[union-attr]
    entry = again.lever(labelled.id).model_dump()
    with pytest.raises(ValidationError, match="for its own target"):
        LeverEntry.model_validate({**entry, "vector_name": "power.labelled"})
    role = fake_catalog_v2().levers[0].model_dump()
    with pytest.raises(ValidationError, match="for its own target"):
        LeverEntry.model_validate({**role, "vector_name": f"{role['target']}.labelled"})


def test_the_report_measures_the_vectors_of_one_source_and_names_the_sources_there_are(tmp_path: Path) -> None:
    import json

    import typer

    from causalguard.commands.behaviour import _vector_layers

    folder = tmp_path / "vectors"
    folder.mkdir()
    listed = {"power": {"layer": 3}, "power.labelled": {"layer": 3}, "security": {"layer": 4}}
    (folder / "vectors.json").write_text(json.dumps({"vectors": listed}))
    assert _vector_layers(tmp_path) == {"power": 3, "security": 4}
    assert _vector_layers(tmp_path, "labelled") == {"power.labelled": 3}
    with pytest.raises(typer.BadParameter, match="no vectors from 'contrast' \\(it has: labelled, replies\\)"):
        _vector_layers(tmp_path, "contrast")
