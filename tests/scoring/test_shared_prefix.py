"""Prefix reuse must give the same numbers as full forward passes (exact to float tolerance)."""

import torch

from causalguard.models.loaded import LoadedModel
from causalguard.scoring.shared_prefix import continuation_logprobs, next_token_logits

PREFIX = 'Here is how a careful person describes themselves:\n"'
CONTINUATIONS = ["I help.", "I never, ever share anything with my neighbours.", "I like rules a lot."]


def _full_logits(lm: LoadedModel, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return lm.model(input_ids=torch.tensor([ids])).logits[0].float()


def test_next_token_logits_match_single_sequence_forward(tiny_lm: LoadedModel) -> None:
    tok = tiny_lm.tokenizer
    prefix = tok(PREFIX).input_ids
    conts = [tok(c, add_special_tokens=False).input_ids for c in CONTINUATIONS]
    expected = torch.stack([_full_logits(tiny_lm, prefix + c)[-1] for c in conts])
    for reuse in (True, False):
        for batch_size in (1, 2, 3):
            got = next_token_logits(
                tiny_lm.model, prefix, conts, pad_id=tiny_lm.pad_token_id, batch_size=batch_size, reuse_prefix=reuse
            )
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_continuation_logprobs_match_manual_computation(tiny_lm: LoadedModel) -> None:
    tok = tiny_lm.tokenizer
    prefix = tok(PREFIX).input_ids
    conts = [tok(c, add_special_tokens=False).input_ids for c in CONTINUATIONS]
    expected = []
    for c in conts:
        logprobs = torch.log_softmax(_full_logits(tiny_lm, prefix + c), -1)
        positions = range(len(prefix) - 1, len(prefix) + len(c) - 1)
        expected.append(torch.stack([logprobs[p, t] for p, t in zip(positions, c, strict=True)]))
    for reuse in (True, False):
        got = continuation_logprobs(
            tiny_lm.model, prefix, conts, pad_id=tiny_lm.pad_token_id, batch_size=2, reuse_prefix=reuse
        )
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-4)


def test_prefix_cache_is_not_mutated_between_batches(tiny_lm: LoadedModel) -> None:
    tok = tiny_lm.tokenizer
    prefix = tok(PREFIX).input_ids
    conts = [tok(c, add_special_tokens=False).input_ids for c in CONTINUATIONS * 3]
    one_batch = next_token_logits(tiny_lm.model, prefix, conts, pad_id=0, batch_size=len(conts))
    many = next_token_logits(tiny_lm.model, prefix, conts, pad_id=0, batch_size=2)
    torch.testing.assert_close(one_batch, many, atol=1e-4, rtol=1e-4)
