"""Value adapters: a PEFT LoRA folder applied per row through module hooks gives exactly what peft's own
model gives (logits and greedy tokens), only to the rows whose plan holds it (mixed batches equal each row
alone, in ``generate_rows`` and in the continuous batcher), hooks are removed after use; loading rejects
another model's card, a wrong shape, a non-finite weight, an unknown module and unsupported LoRA options,
naming file and field; the trainer's pair selection and a real (tiny) training run; the catalog and the
planner carry adapter levers only when their verdict is usable and the adapters are loaded."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from causalguard.adapters.hf.hooks import RowPlan, SteeringPlan, steer
from causalguard.adapters.hf.value_adapters import (
    ADAPTER_CARD,
    ADAPTER_SCHEMA,
    PEFT_WEIGHTS,
    AdapterIntervention,
    ValueAdapter,
    install_adapter_hooks,
    install_intervention_hooks,
    load_value_adapter,
    load_value_adapters,
    residual_layers,
)
from causalguard.errors import ConfigError
from causalguard.models.loaded import LoadedModel
from causalguard.runtime.generation import GenerationRow, chat_prompt_ids, generate_rows

MODULES = ["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"]


def _save_adapter(
    lm: LoadedModel,
    folder: Path,
    *,
    seed: int = 3,
    value: str = "benevolence",
    direction: int = 1,
    fingerprint: str | None = None,
) -> Path:
    """A real PEFT LoRA adapter with random (non-zero) B weights, saved by peft, plus its card."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    peft_model = get_peft_model(copy.deepcopy(lm.model), LoraConfig(r=4, lora_alpha=8, target_modules=MODULES))
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.2)
    peft_model.save_pretrained(str(folder))
    card = {
        "schema": ADAPTER_SCHEMA,
        "model_fingerprint": fingerprint or lm.fingerprint,
        "value": value,
        "direction": direction,
        "training": {},
    }
    (folder / ADAPTER_CARD).write_text(json.dumps(card))
    return folder


@pytest.fixture(scope="module")
def adapter_dir(tiny_lm: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_adapter(tiny_lm, tmp_path_factory.mktemp("adapters") / "benevolence-up")


def test_the_hooks_apply_the_adapter_exactly_as_peft_does_and_only_to_its_row(
    tiny_lm: LoadedModel, adapter_dir: Path
) -> None:
    from peft import PeftModel

    adapter = load_value_adapter(adapter_dir, tiny_lm.model, fingerprint=tiny_lm.fingerprint)
    ids = torch.randint(0, 400, (2, 7))
    reference = PeftModel.from_pretrained(copy.deepcopy(tiny_lm.model), str(adapter_dir)).eval()
    with torch.inference_mode():
        expected = reference(input_ids=ids).logits
        plain = tiny_lm.model(input_ids=ids).logits
        with install_adapter_hooks(tiny_lm.model, [adapter]) as hooks:
            assert hooks.installed
            with steer(SteeringPlan((RowPlan((adapter.intervention(1.0),)), RowPlan(())))):
                mixed = tiny_lm.model(input_ids=ids).logits
            unsteered = tiny_lm.model(input_ids=ids).logits  # hooks installed, no plan: no change
    assert not hooks.installed
    assert not any(m._forward_hooks for m in tiny_lm.model.modules())  # removed after use
    assert not torch.allclose(expected[0], plain[0], atol=1e-3)  # the adapter does change the model
    assert torch.allclose(mixed[0], expected[0], atol=1e-4)
    assert torch.allclose(mixed[1], plain[1], atol=1e-5)
    assert torch.equal(unsteered, plain)


def test_a_scale_multiplies_the_adapters_change(tiny_lm: LoadedModel, adapter_dir: Path) -> None:
    adapter = load_value_adapter(adapter_dir, tiny_lm.model)
    ids = torch.randint(0, 400, (1, 5))
    seen: list[torch.Tensor] = []
    module = dict(tiny_lm.model.named_modules())["model.layers.0.self_attn.q_proj"]
    with torch.inference_mode(), install_adapter_hooks(tiny_lm.model, [adapter]):
        handle = module.register_forward_hook(lambda m, a, out: seen.append(out.clone()))
        try:
            for scale in (1.0, 2.0):
                with steer(SteeringPlan.broadcast([adapter.intervention(scale)])):
                    tiny_lm.model(input_ids=ids)
            tiny_lm.model(input_ids=ids)
        finally:
            handle.remove()
    one, two, none = seen  # the adapter's hook ran first, so each output holds its change
    assert torch.allclose(two - none, 2 * (one - none), atol=1e-5)
    with pytest.raises(ValueError, match="scale"):
        adapter.intervention(0.0)
    with pytest.raises(ValueError, match="scale"):
        adapter.intervention(float("nan"))


def test_adapter_rows_in_a_mixed_batch_equal_each_row_alone(tiny_lm: LoadedModel, adapter_dir: Path) -> None:
    adapter = load_value_adapter(adapter_dir, tiny_lm.model)
    texts = ["What should I cook tonight?", "Any weekend ideas?", "How do I save money?"]
    prompts = [chat_prompt_ids(tiny_lm, [{"role": "user", "content": t}], None, []) for t in texts]
    rows = [
        GenerationRow(prompts[0], (adapter.intervention(1.0),)),
        GenerationRow(prompts[1]),
        GenerationRow(prompts[2], (adapter.intervention(0.5),)),
    ]
    with install_intervention_hooks(tiny_lm.model, [i for r in rows for i in r.interventions]):
        together = generate_rows(tiny_lm, rows, max_new_tokens=6)
        alone = [generate_rows(tiny_lm, [r], max_new_tokens=6)[0] for r in rows]
        plain = generate_rows(tiny_lm, [GenerationRow(prompts[0])], max_new_tokens=6)[0]
    assert [g.tokens for g in together] == [g.tokens for g in alone]
    assert together[0].tokens != plain.tokens  # the adapter steers every decode step's row
    assert not any(m._forward_hooks for m in tiny_lm.model.modules())


def test_adapter_rows_in_the_continuous_batcher_equal_generate_rows(tiny_lm: LoadedModel, adapter_dir: Path) -> None:
    from causalguard.runtime.batcher import ContinuousBatcher, DecodeSettings

    adapter = load_value_adapter(adapter_dir, tiny_lm.model)
    prompts = [
        chat_prompt_ids(tiny_lm, [{"role": "user", "content": t}], None, [])
        for t in ("Hello there", "Tell me a story about a cat")
    ]
    rows = [GenerationRow(prompts[0], (adapter.intervention(1.0),)), GenerationRow(prompts[1])]
    with install_adapter_hooks(tiny_lm.model, [adapter]):
        expected = [generate_rows(tiny_lm, [r], max_new_tokens=6)[0].tokens for r in rows]
        with ContinuousBatcher(tiny_lm, max_rows=4) as batcher:
            jobs = [batcher.submit(r, DecodeSettings(6)) for r in rows]
            got = [job.result(timeout=60).tokens for job in jobs]
    assert got == expected


def test_the_decoder_layer_dispatcher_ignores_adapters(tiny_lm: LoadedModel, adapter_dir: Path) -> None:
    adapter = load_value_adapter(adapter_dir, tiny_lm.model)
    assert residual_layers([adapter.intervention(1.0)]) == set()
    with pytest.raises(TypeError):
        adapter.intervention(1.0).delta(torch.zeros(2, tiny_lm.hidden_size))


def _copy_adapter(adapter_dir: Path, tmp_path: Path) -> Path:
    import shutil

    folder = tmp_path / "benevolence-up"
    shutil.copytree(adapter_dir, folder)
    return folder


def test_loading_rejects_a_damaged_or_foreign_adapter_naming_file_and_field(
    tiny_lm: LoadedModel, adapter_dir: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    folder = _copy_adapter(adapter_dir, tmp_path)
    with pytest.raises(ConfigError, match=r"adapter\.json.*model_fingerprint"):
        load_value_adapter(folder, tiny_lm.model, fingerprint="another-model")
    weights = load_file(str(folder / PEFT_WEIGHTS))
    key = next(k for k in weights if k.endswith("lora_A.weight"))
    save_file({**weights, key: weights[key][:, :-1].contiguous()}, str(folder / PEFT_WEIGHTS))
    with pytest.raises(ConfigError, match=r"adapter_model\.safetensors.*shapes"):
        load_value_adapter(folder, tiny_lm.model)
    bad = weights[key].clone()
    bad[0, 0] = float("nan")
    save_file({**weights, key: bad}, str(folder / PEFT_WEIGHTS))
    with pytest.raises(ConfigError, match="non-finite"):
        load_value_adapter(folder, tiny_lm.model)
    save_file(
        {**weights, "base_model.model.model.layers.9.mlp.up_proj.lora_A.weight": weights[key].clone()},
        str(folder / PEFT_WEIGHTS),
    )
    with pytest.raises(ConfigError, match=r"model\.layers\.9\.mlp\.up_proj"):
        load_value_adapter(folder, tiny_lm.model)
    save_file(weights, str(folder / PEFT_WEIGHTS))
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ConfigError, match="use_dora"):
        load_value_adapter(folder, tiny_lm.model)
    (folder / "adapter_config.json").write_text(json.dumps(config))
    card = json.loads((folder / ADAPTER_CARD).read_text())
    (folder / ADAPTER_CARD).write_text(json.dumps({**card, "direction": True}))
    with pytest.raises(ConfigError, match="direction"):
        load_value_adapter(folder, tiny_lm.model)
    (folder / ADAPTER_CARD).unlink()
    with pytest.raises(ConfigError, match=r"adapter\.json.*no such file"):
        load_value_adapter(folder, tiny_lm.model)


def test_a_bundle_without_adapters_loads_none(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    assert load_value_adapters(tmp_path / "adapters", tiny_lm.model) == {}


def test_pairs_pick_the_most_specific_pole_replies_and_drop_degraded_ones() -> None:
    from causalguard.graphs.behaviour.replies import Persona
    from causalguard.graphs.levers.adapters import preference_pairs
    from causalguard.judging.prompt_sets import Prompt
    from causalguard.judging.reply_quality import QualityCalibration

    calibration = QualityCalibration(
        n=100,
        max_repetition=0.2,
        min_distinct2=0.5,
        max_perplexity=10.0,
        min_relevance=-1.0,
        refusal_rate=0.0,
        degraded_rate=0.05,
    )
    persona, prompt = Persona("assistant", None), Prompt("be01", "How do I help my friend?", ("benevolence",), "dev")
    fluent = "You could call your friend this evening, listen to what worries them and offer to help with errands."
    kind = "Spend time with your friend, ask how they feel and cook them a warm meal this week if you can."
    loop = "help help help help help help help help help help help help help help help help"
    cold = "Focus on your own goals first and let your friend sort out their own problems without you."
    key = lambda pole, s: (f"adapter-source:benevolence:{pole}:{s}", "assistant", "be01")  # noqa: E731
    candidates = {key("+", "greedy"): fluent, key("+", "s0"): kind, key("+", "s1"): loop, key("-", "greedy"): cold}
    specific = {key("+", "greedy"): 0.3, key("+", "s0"): 0.5, key("+", "s1"): 0.9, key("-", "greedy"): -0.4}
    up = preference_pairs("benevolence", 1, candidates, specific, [prompt], [persona], calibration, margin=0.2)
    assert [(p.chosen, p.rejected) for p in up] == [(kind, cold)]  # the loop scores highest but is degraded
    assert up[0].margin == pytest.approx(0.9)
    down = preference_pairs("benevolence", -1, candidates, specific, [prompt], [persona], calibration, margin=0.2)
    assert [(p.chosen, p.rejected) for p in down] == [(cold, kind)]
    assert preference_pairs("benevolence", 1, candidates, specific, [prompt], [persona], calibration, margin=1.0) == []


def test_training_writes_a_loadable_adapter_that_moves_toward_the_chosen_replies(
    tiny_lm: LoadedModel, tmp_path: Path
) -> None:
    from causalguard.graphs.levers.adapters import AdapterSettings, _sequence_logprobs, train_adapter

    context = chat_prompt_ids(tiny_lm, [{"role": "user", "content": "Any advice?"}], None, [])
    chosen = tiny_lm.tokenizer("Be kind to the people around you.", add_special_tokens=False).input_ids
    rejected = tiny_lm.tokenizer("Look after yourself first.", add_special_tokens=False).input_ids
    rows = [(context, chosen, rejected)] * 8
    settings = AdapterSettings(epochs=4, rank=2, learning_rate=1e-2, batch_size=4, loss="dpo")
    before = [p.clone() for p in tiny_lm.model.parameters()]
    trained = train_adapter(
        tiny_lm,
        rows,
        settings,
        tmp_path / "benevolence-up",
        {"value": "benevolence", "direction": 1, "model_fingerprint": tiny_lm.fingerprint},
    )
    assert all(torch.equal(a, b) for a, b in zip(before, tiny_lm.model.parameters(), strict=True))  # a copy trained
    assert trained.accuracies[-1] == 1.0 and trained.losses[-1] < trained.losses[0]
    adapter = load_value_adapter(tmp_path / "benevolence-up", tiny_lm.model, fingerprint=tiny_lm.fingerprint)
    assert isinstance(adapter, ValueAdapter) and adapter.direction == 1 and adapter.scaling == pytest.approx(8)
    with torch.no_grad(), install_adapter_hooks(tiny_lm.model, [adapter]):
        margin = {}
        for name, plan in (("plain", None), ("adapter", SteeringPlan.broadcast([adapter.intervention(1.0)]))):
            with steer(plan):
                good, _ = _sequence_logprobs(tiny_lm.model, [(context, chosen)], tiny_lm.pad_token_id)
                bad, _ = _sequence_logprobs(tiny_lm.model, [(context, rejected)], tiny_lm.pad_token_id)
            margin[name] = float(good - bad)
    assert margin["adapter"] > margin["plain"]
    assert isinstance(adapter.intervention(1.0), AdapterIntervention)


def test_a_deeply_nested_card_is_a_clear_error(tiny_lm: LoadedModel, adapter_dir: Path, tmp_path: Path) -> None:
    folder = _copy_adapter(adapter_dir, tmp_path)
    (folder / ADAPTER_CARD).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match=r"adapter\.json.*nested too deeply"):
        load_value_adapter(folder, tiny_lm.model)


@pytest.mark.parametrize(
    ("args", "flag"),
    [(["--directions", "sideways"], "--directions"), (["--loss", "ppo"], "--loss"), (["--samples", "99"], "--samples")],
)
def test_levers_adapters_refuses_bad_options_before_loading_a_model(tmp_path: Path, args: list[str], flag: str) -> None:
    from typer.testing import CliRunner

    from causalguard.bundle.format import shipped_bundle_dir
    from causalguard.cli import app

    result = CliRunner().invoke(
        app, ["levers", "adapters", "--bundle", str(shipped_bundle_dir("smollm2-135m-instruct")), *args]
    )
    assert result.exit_code == 2 and flag in result.output, result.output
