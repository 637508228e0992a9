"""Classifier-free guidance per row: g = 1 is the role lever itself token for token; guided rows in a mixed
batch (one-shot and continuous batching, greedy and seeded) give what each gets alone; the guided tokens
are what transformers' own CFG processor picks; bad scales are refused."""

from __future__ import annotations

import pytest
import torch

from causalguard.models.loaded import LoadedModel
from causalguard.runtime.batcher import ContinuousBatcher, DecodeSettings
from causalguard.runtime.generation import GenerationRow, chat_prompt_ids, generate_rows
from causalguard.runtime.guidance import Guidance, guided_logits

ROLE = "In your reply, recommend something new, exciting or adventurous."
OPPOSITE = "In your reply, recommend the familiar, calm and predictable option."


def _ids(lm: LoadedModel, text: str, instructions: list[str]) -> list[int]:
    return chat_prompt_ids(lm, [{"role": "user", "content": text}], None, instructions)


def _guided(
    lm: LoadedModel, text: str, scale: float, seed: int | None = None, negative: list[str] | None = None
) -> GenerationRow:
    return GenerationRow(
        _ids(lm, text, [ROLE]),
        (),
        seed,
        Guidance(scale, tuple(_ids(lm, text, negative if negative is not None else []))),
    )


def test_guided_logits_follow_the_cfg_formula() -> None:
    cond, uncond = torch.randn(50), torch.randn(50)
    lc, lu = torch.log_softmax(cond, -1), torch.log_softmax(uncond, -1)
    assert torch.allclose(guided_logits(cond, uncond, 2.5), lu + 2.5 * (lc - lu))
    assert torch.equal(guided_logits(cond, uncond, 1.0), lc)


@pytest.mark.parametrize("scale", [0.5, 0.0, float("nan"), float("inf"), 11.0])
def test_a_scale_outside_one_to_ten_is_refused(scale: float) -> None:
    with pytest.raises(ValueError, match="guidance scale"):
        Guidance(scale, (1, 2))
    with pytest.raises(ValueError, match="negative prompt"):
        Guidance(2.0, ())


def test_scale_one_is_the_role_lever_token_for_token(lm: LoadedModel) -> None:
    text = "I have a free weekend. Any ideas?"
    role = GenerationRow(_ids(lm, text, [ROLE]))
    plain = generate_rows(lm, [role], max_new_tokens=20)[0]
    assert generate_rows(lm, [_guided(lm, text, 1.0)], max_new_tokens=20)[0].tokens == plain.tokens
    with ContinuousBatcher(lm, max_rows=4) as batcher:
        assert batcher.submit(_guided(lm, text, 1.0), DecodeSettings(20)).result(timeout=300).tokens == plain.tokens
    sampled = [
        generate_rows(lm, [GenerationRow(role.prompt, (), 5, g)], max_new_tokens=12, temperature=0.8)[0].tokens
        for g in (None, Guidance(1.0, tuple(_ids(lm, text, []))))
    ]
    assert sampled[0] == sampled[1]


def test_guided_tokens_are_what_transformers_cfg_picks(tiny_lm: LoadedModel) -> None:
    text = "What should I cook tonight?"
    row = _guided(tiny_lm, text, 3.0, negative=[OPPOSITE])
    ours = generate_rows(tiny_lm, [row], max_new_tokens=10)[0].tokens
    ids = torch.tensor([list(row.prompt)])
    assert row.guidance is not None
    negative = torch.tensor([list(row.guidance.negative_prompt)])
    out = tiny_lm.model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=10,
        do_sample=False,
        guidance_scale=3.0,
        negative_prompt_ids=negative,
        negative_prompt_attention_mask=torch.ones_like(negative),
        pad_token_id=tiny_lm.pad_token_id,
    )
    theirs = out[0, ids.shape[1] :].tolist()
    eos = tiny_lm.tokenizer.eos_token_id
    assert ours == (theirs[: theirs.index(eos)] if eos in theirs else theirs)
    assert ours != generate_rows(tiny_lm, [GenerationRow(row.prompt)], max_new_tokens=10)[0].tokens


def test_guided_rows_in_a_mixed_batch_equal_each_row_alone(lm: LoadedModel) -> None:
    texts = ["I have a free weekend. Any ideas?", "How do I ask my boss for a raise?", "What should I cook tonight?"]
    rows = [
        _guided(lm, texts[0], 2.0, negative=[OPPOSITE]),
        GenerationRow(_ids(lm, texts[1], [])),
        _guided(lm, texts[2], 3.0),
        GenerationRow(_ids(lm, texts[0], [ROLE]), (), 11),
        _guided(lm, texts[1], 1.5, seed=3),
    ]
    temps = [0.0, 0.0, 0.0, 0.9, 0.9]
    alone = [
        generate_rows(lm, [row], max_new_tokens=16, temperature=t)[0].tokens for row, t in zip(rows, temps, strict=True)
    ]
    greedy = generate_rows(lm, rows[:3], max_new_tokens=16)
    assert [g.tokens for g in greedy] == alone[:3]
    assert alone[0] != generate_rows(lm, [GenerationRow(rows[0].prompt)], max_new_tokens=16)[0].tokens
    with ContinuousBatcher(lm, max_rows=6) as batcher:
        jobs = [batcher.submit(row, DecodeSettings(16, temperature=t)) for row, t in zip(rows, temps, strict=True)]
        together = [job.result(timeout=300).tokens for job in jobs]
        assert batcher.peak_rows <= 6  # a guided row counts twice against max_rows
    assert together == alone


def test_a_streamed_guided_row_streams_the_guided_tokens(lm: LoadedModel) -> None:
    from transformers import TextIteratorStreamer

    row = _guided(lm, "Any weekend ideas?", 2.0)
    streamer = TextIteratorStreamer(lm.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=60)
    (out,) = generate_rows(lm, [row], max_new_tokens=12, streamer=streamer)
    assert "".join(streamer).strip() == lm.tokenizer.decode(out.tokens, skip_special_tokens=True).strip()


def test_a_pair_row_in_a_mixed_batch_equals_it_alone_and_its_twin_carries_no_vector(tiny_lm: LoadedModel) -> None:
    """A pair lever's row: a guided row with a vector. Its twin decodes without the vector (prefill and every
    decode step), in one-shot and continuous batches alike."""
    from causalguard.adapters.hf.hooks import install_steering_hooks
    from causalguard.adapters.hf.vectors import VectorIntervention

    def ids(text: str, instructions: list[str]) -> list[int]:
        return _ids(tiny_lm, text, instructions)

    vector = VectorIntervention(0, torch.ones(tiny_lm.hidden_size) * 3.0)
    texts = ["What should I cook tonight?", "Any weekend ideas?"]
    pair = GenerationRow(ids(texts[0], [ROLE]), (vector,), None, Guidance(2.0, tuple(ids(texts[0], [OPPOSITE]))))
    rows = [pair, GenerationRow(ids(texts[1], [])), GenerationRow(ids(texts[1], [ROLE]), (vector,))]
    with install_steering_hooks(tiny_lm.model, [0]):
        alone = [generate_rows(tiny_lm, [row], max_new_tokens=8)[0].tokens for row in rows]
        together = [g.tokens for g in generate_rows(tiny_lm, rows, max_new_tokens=8)]
        with ContinuousBatcher(tiny_lm, max_rows=4) as batcher:
            jobs = [batcher.submit(row, DecodeSettings(8)) for row in rows]
            continuous = [job.result(timeout=300).tokens for job in jobs]
        # each part matters: without the vector, or without guidance, the pair's tokens differ
        no_vector = generate_rows(tiny_lm, [GenerationRow(pair.prompt, (), None, pair.guidance)], max_new_tokens=8)
        no_guidance = generate_rows(tiny_lm, [GenerationRow(pair.prompt, (vector,))], max_new_tokens=8)
    assert together == alone and continuous == alone
    assert alone[0] != no_vector[0].tokens and alone[0] != no_guidance[0].tokens
