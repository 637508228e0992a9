"""Steering vectors: the dispatcher adds exactly strength x norm x direction at the vector's layer on
generated tokens only (prefill and decode steps), per row; hooks are removed after use; loading rejects
a wrong shape, a non-finite vector, another model's card, a bad layer or norm, naming file and field;
extraction helpers pick the separating layer; the catalog and planner carry vector and guided levers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from causalguard.adapters.hf.hooks import RowPlan, SteeringPlan, decoder_layers, install_steering_hooks, steer
from causalguard.adapters.hf.interventions import Scope
from causalguard.adapters.hf.vectors import (
    VECTORS_CARD,
    VectorEntry,
    VectorIntervention,
    load_vectors,
    save_vectors,
)
from causalguard.errors import ConfigError
from causalguard.models.loaded import LoadedModel
from causalguard.runtime.generation import GenerationRow, chat_prompt_ids, generate_rows


def _layer_outputs(lm: LoadedModel, ids: torch.Tensor, plan: SteeringPlan | None) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    handles = [
        layer.register_forward_hook(lambda m, a, out: seen.append(out[0] if isinstance(out, tuple) else out))
        for layer in decoder_layers(lm.model)
    ]
    try:
        with torch.inference_mode(), steer(plan):
            lm.model(input_ids=ids)
    finally:
        for h in handles:
            h.remove()
    return seen


def test_a_vector_adds_exactly_its_delta_on_generated_tokens_of_its_row(tiny_lm: LoadedModel) -> None:
    torch.manual_seed(0)
    delta = torch.randn(tiny_lm.hidden_size)
    vector = VectorIntervention(1, delta)
    ids = torch.randint(0, 400, (2, 6))
    plain = _layer_outputs(tiny_lm, ids, None)
    # row 0 steered with a prompt of 4 tokens (positions 4, 5 are "generated"), row 1 unsteered
    with install_steering_hooks(tiny_lm.model, [1]) as hooks:
        steered = _layer_outputs(tiny_lm, ids, SteeringPlan((RowPlan((vector,), 4), RowPlan((), 4))))
        assert hooks.installed
    assert not hooks.installed and not decoder_layers(tiny_lm.model)[1]._forward_hooks  # removed after use
    assert torch.equal(steered[0], plain[0])  # the layer before is untouched
    assert torch.allclose(steered[1][0, :4], plain[1][0, :4])  # prompt tokens: no change
    assert torch.allclose(steered[1][0, 4:], plain[1][0, 4:] + delta, atol=1e-5)
    assert torch.allclose(steered[1][1], plain[1][1])  # the other row: no change


def test_vector_rows_in_a_mixed_batch_equal_each_row_alone_and_steer_decode_steps(tiny_lm: LoadedModel) -> None:
    vector = VectorIntervention(0, torch.ones(tiny_lm.hidden_size) * 3.0)
    texts = ["What should I cook tonight?", "Any weekend ideas?"]
    rows = [
        GenerationRow(chat_prompt_ids(tiny_lm, [{"role": "user", "content": t}], None, []), inter)
        for t, inter in zip(texts, [(vector,), ()], strict=True)
    ]
    with install_steering_hooks(tiny_lm.model, [0]):
        alone = [generate_rows(tiny_lm, [row], max_new_tokens=8)[0].tokens for row in rows]
        together = [g.tokens for g in generate_rows(tiny_lm, rows, max_new_tokens=8)]
    assert together == alone
    assert alone[0] != generate_rows(tiny_lm, [GenerationRow(rows[0].prompt)], max_new_tokens=8)[0].tokens
    assert alone[1] == generate_rows(tiny_lm, [rows[1]], max_new_tokens=8)[0].tokens
    assert Scope("generated") == vector.scope


def _saved(folder: Path, hidden: int = 64, layer: int = 1, fingerprint: str = "tiny") -> Path:
    entry = VectorEntry("benevolence", layer, torch.ones(hidden), 2.5)
    save_vectors(folder, {"benevolence": entry}, {"model_fingerprint": fingerprint, "hidden_size": hidden})
    return folder


def test_loading_checks_the_card_and_intervention_scales_by_the_norm(tmp_path: Path) -> None:
    vectors = load_vectors(_saved(tmp_path), hidden_size=64, num_layers=2, fingerprint="tiny")
    inter = vectors.intervention("benevolence", 0.5)
    assert inter.layer == 1 and torch.allclose(inter.delta_vector.norm(), torch.tensor(1.25))
    with pytest.raises(KeyError, match="no steering vector for 'power'"):
        vectors.intervention("power", 0.5)
    with pytest.raises(ValueError, match="strength"):
        vectors.intervention("benevolence", float("nan"))


@pytest.mark.parametrize(
    ("damage", "field"),
    [
        ("shape", "benevolence"),
        ("nan", "benevolence"),
        ("fingerprint", "model_fingerprint"),
        ("layer", "vectors.benevolence.layer"),
        ("norm", "vectors.benevolence.residual_norm"),
        ("bytes", ""),
    ],
)
def test_loading_rejects_damaged_vector_files_naming_file_and_field(tmp_path: Path, damage: str, field: str) -> None:
    from safetensors.torch import save_file

    folder = _saved(tmp_path)
    card = json.loads((folder / VECTORS_CARD).read_text())
    if damage == "shape":
        save_file({"benevolence": torch.ones(32)}, str(folder / "vectors.safetensors"))
    elif damage == "nan":
        save_file({"benevolence": torch.full((64,), float("nan"))}, str(folder / "vectors.safetensors"))
    elif damage == "fingerprint":
        card["model_fingerprint"] = "another-model"
    elif damage == "layer":
        card["vectors"]["benevolence"]["layer"] = 7
    elif damage == "norm":
        card["vectors"]["benevolence"]["residual_norm"] = float("inf")
    elif damage == "bytes":
        raw = bytearray((folder / "vectors.safetensors").read_bytes())
        raw[3] ^= 0xFF
        (folder / "vectors.safetensors").write_bytes(bytes(raw))
    (folder / VECTORS_CARD).write_text(json.dumps(card))
    with pytest.raises(ConfigError) as caught:
        load_vectors(folder, hidden_size=64, num_layers=2, fingerprint="tiny")
    problem = caught.value.problems[0]
    assert problem.field == field and str(folder) in problem.path


def test_the_split_half_layer_choice_picks_the_layer_that_separates() -> None:
    import numpy as np

    from causalguard.graphs.levers.vectors import VectorSettings, candidate_layers, choose_layer

    rng = np.random.default_rng(0)
    pos, neg = rng.normal(size=(12, 3, 8)), rng.normal(size=(12, 3, 8))
    pos[:, 2, 0] += 3.0  # only layer index 2 carries the value
    best, scores = choose_layer(pos, neg, np.array([0, 1] * 6))
    assert best == 2 and scores[2] > 0.9 > max(scores[:2])
    assert candidate_layers(30, VectorSettings()) == list(range(10, 22))  # 35-70% of SmolLM2's depth


def test_an_all_token_vector_adds_its_delta_on_the_prompt_too(tiny_lm: LoadedModel) -> None:
    torch.manual_seed(1)
    delta = torch.randn(tiny_lm.hidden_size)
    ids = torch.randint(0, 400, (1, 6))
    plain = _layer_outputs(tiny_lm, ids, None)
    with install_steering_hooks(tiny_lm.model, [1]):
        generated = _layer_outputs(tiny_lm, ids, SteeringPlan((RowPlan((VectorIntervention(1, delta),), 4),)))
        everywhere = _layer_outputs(
            tiny_lm, ids, SteeringPlan((RowPlan((VectorIntervention(1, delta, Scope("all")),), 4),))
        )
    assert torch.allclose(everywhere[1][0], plain[1][0] + delta, atol=1e-5)  # every token, the prompt's included
    assert torch.allclose(everywhere[1][0, 4:], generated[1][0, 4:], atol=1e-5)
    assert not torch.allclose(everywhere[1][0, :4], generated[1][0, :4])


def test_labelled_directions_are_the_dev_half_mean_difference_and_join_the_replies_vectors(
    tiny_lm: LoadedModel, tmp_path: Path
) -> None:
    import json

    import numpy as np

    from causalguard.graphs.levers.labelled_vectors import add_labelled_vectors, labelled_directions
    from causalguard.judging.labelled import LabelledText

    texts = [
        LabelledText("b-h1", "benevolence", "high", "Help your friend move house.", "dev"),
        LabelledText("b-h2", "benevolence", "high", "Call your sister and ask how she is.", "dev"),
        LabelledText("b-l1", "benevolence", "low", "Let your friend move on his own.", "dev"),
        LabelledText("b-l2", "benevolence", "low", "Skip the call; she can manage.", "dev"),
        LabelledText("b-h3", "benevolence", "high", "A test text that must never be read.", "test"),
    ]
    (direction,) = labelled_directions(tiny_lm, texts, {"benevolence": 1}).values()
    dev_only = labelled_directions(tiny_lm, texts[:4], {"benevolence": 1})["benevolence"]
    np.testing.assert_allclose(direction, dev_only, atol=1e-6)  # the test half changes nothing
    assert abs(float(np.linalg.norm(direction)) - 1) < 1e-5
    folder = tmp_path / "bundle" / "vectors"
    folder.parent.mkdir()
    _saved(folder, hidden=tiny_lm.hidden_size, layer=1, fingerprint=tiny_lm.fingerprint)
    before = load_vectors(folder, hidden_size=tiny_lm.hidden_size, num_layers=tiny_lm.num_layers)
    section = add_labelled_vectors(tiny_lm, folder, texts, log=lambda _: None)
    after = load_vectors(folder, hidden_size=tiny_lm.hidden_size, num_layers=tiny_lm.num_layers)
    assert set(after.entries) == {"benevolence", "benevolence.labelled"}
    torch.testing.assert_close(after.entries["benevolence"].direction, before.entries["benevolence"].direction)
    labelled = after.entries["benevolence.labelled"]
    assert labelled.layer == 1 and labelled.residual_norm == before.entries["benevolence"].residual_norm
    np.testing.assert_allclose(labelled.direction.numpy(), direction, atol=1e-5)
    card = json.loads((folder / "vectors.json").read_text())
    assert card["labelled_extraction"]["per_value"]["benevolence"]["texts"] == 4 and section["split"] == "dev"
    with pytest.raises(ValueError, match="no low-pole text for benevolence"):
        labelled_directions(tiny_lm, texts[:2], {"benevolence": 1})
