"""SAE interventions through forward hooks: exact tensors, decode steps, cleanup, concurrency."""

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from causalguard import ConfigError
from causalguard.adapters.hf import FeatureEdit, SaeIntervention, Scope, install_steering_hooks, load_sae, steer
from causalguard.adapters.hf.hooks import RowPlan, SteeringPlan, decoder_layers
from causalguard.adapters.hf.interventions import span_positions
from causalguard.adapters.hf.sae import LoadedSae, resolve_layer
from causalguard.models.loaded import LoadedModel

LAYER = 0  # the hooked layer (conftest.TINY_SAE_LAYER); layer LAYER + 1 receives its steered output


def _hidden(lm: LoadedModel, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(input of the hooked layer, input of the next layer) as the model really computes them.

    Not ``output_hidden_states``: transformers captures those with its own hook, registered before
    ours, so they show a layer's output before steering.
    """
    layers = decoder_layers(lm.model)
    seen: dict[int, torch.Tensor] = {}

    def capture(index: int):  # type: ignore[no-untyped-def]
        def pre_hook(module, args, kwargs):  # type: ignore[no-untyped-def]
            seen[index] = (args[0] if args else kwargs["hidden_states"]).detach().clone()

        return pre_hook

    handles = [layers[i].register_forward_pre_hook(capture(i), with_kwargs=True) for i in (LAYER, LAYER + 1)]
    try:
        with torch.inference_mode():
            lm.model(input_ids=ids)
    finally:
        for handle in handles:
            handle.remove()
    return seen[LAYER], seen[LAYER + 1]


def _ours(layer: torch.nn.Module) -> int:
    return sum(1 for hook in layer._forward_hooks.values() if "_make_hook" in getattr(hook, "__qualname__", ""))


def test_add_changes_exactly_the_hooked_layer(tiny_lm: LoadedModel, tiny_sae: LoadedSae) -> None:
    ids = torch.tensor([tiny_lm.tokenizer("I value tradition and my family.").input_ids])
    before = _hidden(tiny_lm, ids)
    intervention = SaeIntervention(tiny_sae, (FeatureEdit(3, "add", 4.0), FeatureEdit(7, "add", -2.0)))
    with install_steering_hooks(tiny_lm.model, [LAYER]), steer(SteeringPlan.broadcast([intervention])):
        after = _hidden(tiny_lm, ids)
    expected_delta = 4.0 * tiny_sae.sae.W_dec[3] - 2.0 * tiny_sae.sae.W_dec[7]
    torch.testing.assert_close(after[0], before[0])  # everything before the hooked layer is untouched
    torch.testing.assert_close(after[1], before[1] + expected_delta, atol=1e-5, rtol=1e-5)


def test_clamp_and_multiply_follow_their_formulas(tiny_lm: LoadedModel, tiny_sae: LoadedSae) -> None:
    ids = torch.tensor([tiny_lm.tokenizer("Power and status matter.").input_ids])
    h = _hidden(tiny_lm, ids)[1][0]
    acts = tiny_sae.sae.encode(h)
    decoder = tiny_sae.sae.W_dec
    for edit, coefficient in (
        (FeatureEdit(5, "clamp", 2.5), 2.5 - acts[:, 5]),
        (FeatureEdit(5, "multiply", 3.0), 2.0 * acts[:, 5]),
    ):
        plan = SteeringPlan.broadcast([SaeIntervention(tiny_sae, (edit,))])
        with install_steering_hooks(tiny_lm.model, [LAYER]), steer(plan):
            steered = _hidden(tiny_lm, ids)[1][0]
        torch.testing.assert_close(steered, h + coefficient[:, None] * decoder[5], atol=1e-5, rtol=1e-5)


def _greedy_without_cache(lm: LoadedModel, ids: list[int], steps: int) -> list[int]:
    out = list(ids)
    with torch.inference_mode():
        for _ in range(steps):
            logits = lm.model(input_ids=torch.tensor([out]), use_cache=False).logits
            out.append(int(logits[0, -1].argmax()))
    return out[len(ids) :]


def _generate(lm: LoadedModel, ids: list[int], steps: int) -> list[int]:
    with torch.inference_mode():
        out = lm.model.generate(
            input_ids=torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=steps,
            do_sample=False,
            pad_token_id=lm.pad_token_id,
        )
    return out[0, len(ids) :].tolist()


def test_steering_applies_on_every_decode_step(tiny_lm: LoadedModel, tiny_sae: LoadedSae) -> None:
    ids = tiny_lm.tokenizer("Tell me about your values").input_ids
    plain = _generate(tiny_lm, ids, 8)
    for scope in (Scope("all"), Scope("generated")):
        intervention = SaeIntervention(tiny_sae, (FeatureEdit(2, "add", 30.0),), scope)
        plan = SteeringPlan((RowPlan((intervention,), prompt_length=len(ids)),))
        with install_steering_hooks(tiny_lm.model, [LAYER]), steer(plan):
            cached = _generate(tiny_lm, ids, 8)
            full = _greedy_without_cache(tiny_lm, ids, 8)
        assert cached == full, scope  # decode steps (KV cache) steered exactly like full recomputation
        assert cached != plain, scope


def test_prompt_and_span_scopes(tiny_lm: LoadedModel, tiny_sae: LoadedSae) -> None:
    prompt = "Please describe your values in one sentence."
    ids = torch.tensor([tiny_lm.tokenizer(prompt, add_special_tokens=False).input_ids])
    before = _hidden(tiny_lm, ids)[1][0]
    span = span_positions(tiny_lm.tokenizer, prompt, " your values")
    assert span and max(span) < ids.shape[1]
    intervention = SaeIntervention(tiny_sae, (FeatureEdit(4, "add", 5.0),), Scope("span", " your values"))
    plan = SteeringPlan((RowPlan((intervention,), prompt_length=ids.shape[1], spans=(span,)),))
    with install_steering_hooks(tiny_lm.model, [LAYER]), steer(plan):
        after = _hidden(tiny_lm, ids)[1][0]
    changed = {i for i in range(ids.shape[1]) if not torch.allclose(after[i], before[i])}
    assert changed == set(span)
    with pytest.raises(ValueError, match="does not occur"):
        span_positions(tiny_lm.tokenizer, prompt, " their values")


def test_hooks_are_removed_on_exceptions_and_plans_restored(tiny_lm: LoadedModel, tiny_sae: LoadedSae) -> None:
    layer = decoder_layers(tiny_lm.model)[LAYER]
    intervention = SaeIntervention(tiny_sae, (FeatureEdit(1, "add", 3.0),))
    with pytest.raises(RuntimeError, match="boom"), install_steering_hooks(tiny_lm.model, [LAYER]) as handle:
        assert handle.installed and _ours(layer) == 1
        with steer(SteeringPlan.broadcast([intervention])):
            raise RuntimeError("boom")
    assert not handle.installed and _ours(layer) == 0
    from causalguard.adapters.hf.hooks import active_plan

    assert active_plan() is None
    with pytest.raises(ValueError, match="unknown layer 9"), install_steering_hooks(tiny_lm.model, [9]):
        pass
    assert _ours(layer) == 0


def test_concurrent_requests_never_see_each_others_interventions(tiny_lm: LoadedModel, tiny_sae: LoadedSae) -> None:
    ids = tiny_lm.tokenizer("What matters most to you?").input_ids
    variants: list[SaeIntervention | None] = [
        None,
        SaeIntervention(tiny_sae, (FeatureEdit(2, "add", 30.0),)),
        SaeIntervention(tiny_sae, (FeatureEdit(9, "clamp", 20.0),)),
        SaeIntervention(tiny_sae, (FeatureEdit(4, "add", -25.0), FeatureEdit(6, "multiply", 4.0))),
    ]

    def run(variant: SaeIntervention | None) -> list[int]:
        plan = SteeringPlan.broadcast([variant]) if variant else None
        with steer(plan):
            return _generate(tiny_lm, ids, 10)

    with install_steering_hooks(tiny_lm.model, [LAYER]):
        alone = [run(v) for v in variants]
        assert len({tuple(a) for a in alone}) == len(variants), "the variants must produce different outputs"
        barrier = threading.Barrier(4)

        def concurrent(index: int) -> list[int]:
            barrier.wait(timeout=10) if index < 4 else None
            return run(variants[index % len(variants)])

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(concurrent, range(16)))
    for index, result in enumerate(results):
        assert result == alone[index % len(variants)], index


def test_config_time_validation(tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="feature 32 is out of range"):
        SaeIntervention(tiny_sae, (FeatureEdit(32, "add", 1.0),))
    with pytest.raises(ValueError, match="unknown edit mode"):
        FeatureEdit(1, "nudge", 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'span' scope needs text"):
        Scope("span")
    assert resolve_layer("blocks.1.hook_resid_post", 2) == 1
    with pytest.raises(ValueError, match="has 2 layers"):
        resolve_layer("model.layers.5", 2)
    from sae_lens import StandardSAE, StandardSAEConfig

    wrong = StandardSAE(StandardSAEConfig(d_in=tiny_lm.hidden_size + 1, d_sae=8))
    wrong.save_model(tmp_path / "wrong")
    with pytest.raises(ConfigError, match="does not match the model's hidden size"):
        load_sae(tmp_path / "wrong", tiny_lm, hook_name="model.layers.1")
    with pytest.raises(ConfigError, match="does not say which hook point"):
        load_sae(tmp_path / "wrong", tiny_lm)
