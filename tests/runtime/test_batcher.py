"""Continuous batching on the real default model: rows with different levers joining mid-flight give
the tokens each request gets alone; stop strings, budgets, cancellation and closing end rows cleanly."""

from __future__ import annotations

import threading
import time

import pytest

from causalguard.adapters.hf.hooks import install_steering_hooks
from causalguard.adapters.hf.interventions import FeatureEdit, SaeIntervention
from causalguard.adapters.hf.sae import load_sae
from causalguard.bundle.format import load_bundle, shipped_bundle_dir
from causalguard.models.loaded import LoadedModel
from causalguard.runtime.batcher import BatcherClosedError, ContinuousBatcher, DecodeSettings
from causalguard.runtime.generation import GenerationRow, chat_prompt_ids, generate_rows

PROMPTS = (
    "I have a free weekend. Any ideas?",
    "Should I help a stranger who dropped their wallet?",
    "How do I ask my boss for a raise?",
    "What should I cook tonight?",
)


def _rows(lm: LoadedModel) -> list[GenerationRow]:
    bundle = load_bundle(shipped_bundle_dir("smollm2-135m-instruct"))
    assert bundle.sae_dir is not None and bundle.catalog is not None and bundle.catalog.sae is not None
    sae = load_sae(bundle.sae_dir, lm)
    lever = next(e for e in bundle.catalog.levers if e.kind == "sae" and e.feature is not None)
    assert lever.feature is not None
    edit = FeatureEdit(
        lever.feature, "add", sae.additive_value(lever.feature, 4 * lever.strength, bundle.catalog.sae.residual_norm)
    )
    steered = (SaeIntervention(sae, (edit,)),)
    role = ["In your reply, recommend something new, exciting or adventurous."]
    return [
        GenerationRow(
            chat_prompt_ids(lm, [{"role": "user", "content": text}], None, role if i == 1 else []),
            steered if i % 2 == 0 else (),
        )
        for i, text in enumerate(PROMPTS)
    ]


def test_mixed_rows_joining_mid_flight_match_each_request_alone(lm: LoadedModel) -> None:
    rows = _rows(lm)
    layer = rows[0].interventions[0].layer
    with install_steering_hooks(lm.model, [layer]):
        alone = [generate_rows(lm, [row], max_new_tokens=24)[0] for row in rows]
        with ContinuousBatcher(lm, max_rows=8) as batcher:
            jobs = [batcher.submit(rows[0], DecodeSettings(24)), batcher.submit(rows[1], DecodeSettings(24))]
            time.sleep(0.5)  # the others join a batch already decoding
            jobs += [batcher.submit(row, DecodeSettings(24)) for row in rows[2:]]
            together = [job.result(timeout=300) for job in jobs]
            assert batcher.peak_rows >= 2
            hits = batcher.prefixes.hits
            assert hits >= 1  # the rows share the chat template's system prompt
            again = [job.result(timeout=300) for job in [batcher.submit(row, DecodeSettings(24)) for row in rows]]
            assert batcher.prefixes.hits >= hits + len(rows)  # every prompt was cached: one token left to compute
    assert [g.tokens for g in together] == [g.tokens for g in alone]
    assert [g.tokens for g in again] == [g.tokens for g in alone]
    assert [g.finish_reason for g in together] == [g.finish_reason for g in alone]
    assert alone[0].tokens != generate_rows(lm, [GenerationRow(rows[0].prompt)], max_new_tokens=24)[0].tokens


def test_budgets_stops_seeds_cancellation_and_closing(lm: LoadedModel) -> None:
    rows = [GenerationRow(r.prompt, (), seed=7) for r in _rows(lm)]
    with ContinuousBatcher(lm, max_rows=2) as batcher:
        short = batcher.submit(rows[0], DecodeSettings(3))
        sampled = [batcher.submit(rows[1], DecodeSettings(12, temperature=0.8)) for _ in range(2)]
        stopped = batcher.submit(rows[2], DecodeSettings(40, stop=(" ",)))
        cancel = threading.Event()
        cancel.set()
        cancelled = batcher.submit(rows[3], DecodeSettings(40), cancel=cancel)
        assert short.result(timeout=300).tokens and len(short.result().tokens) == 3
        assert short.result().finish_reason == "length"
        assert sampled[0].result(timeout=300).tokens == sampled[1].result(timeout=300).tokens  # same seed, same text
        assert stopped.result(timeout=300).finish_reason == "stop"
        assert " " in lm.tokenizer.decode(stopped.result().tokens)
        assert cancelled.result(timeout=300).finish_reason == "cancelled"
        long_running = batcher.submit(rows[0], DecodeSettings(200))
    assert long_running.result(timeout=60).finish_reason == "cancelled"  # closing ends running rows
    with pytest.raises(BatcherClosedError):
        batcher.submit(rows[0], DecodeSettings(4))


def test_the_prefix_cache_reuses_only_under_the_same_interventions_and_evicts_by_tokens() -> None:
    import torch

    from causalguard.runtime.prefix_cache import PrefixCache

    def layers(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(torch.zeros(1, 1, n, 2), torch.zeros(1, 1, n, 2))]

    steered, other = (object(),), (object(),)
    cache = PrefixCache(max_tokens=30, min_reuse=4)
    cache.store(list(range(12)), (), layers(12))
    cache.store(list(range(12)), steered, layers(12))
    assert cache.lookup([*range(10), 99], ())[0] == 10
    assert cache.lookup(list(range(12)), ())[0] == 11  # one token is left to compute
    assert cache.lookup([*range(3), 99], ()) == (0, None)  # below min_reuse
    assert cache.lookup(list(range(12)), other) == (0, None)  # other interventions: nothing shared
    assert cache.lookup(list(range(12)), steered)[0] == 11
    cache.store(list(range(100, 112)), (), layers(12))  # 36 tokens > 30: the least recently used goes
    assert cache.tokens == 24 and cache.lookup(list(range(12)), ()) == (0, None)
    assert cache.lookup(list(range(12)), steered)[0] == 11
    with pytest.raises(ValueError, match="prefix_cache_tokens"):
        PrefixCache(-1)
