"""What vector, guided, pair and adapter levers cost in the shared decode loop: 16 rows, plain vs each kind.

    .venv/bin/python benchmarks/bench_lever_cost.py [--rows 16] [--max-tokens 48] [--rounds 3]

One ``ContinuousBatcher`` on the default model with the shipped bundle's steering vectors. Each round
runs the same 16 conversations (the assistant prompt, everyday questions; greedy, every row forced to
``--max-tokens`` tokens by an end-of-sequence-free budget) three ways, in turn, so drift affects all
alike:

- plain: no levers;
- vector: every row steered by a steering vector on its generated tokens (two values in turn, hooks on
  their layers);
- vector_all: the same vectors added on every token, the prompt's included (``vector_scope: all``);
- guided: every row a guided role lever (g = 2 against the opposite wording): 16 rows plus 16 twins;
- pair: every row a pair lever, the reply-style wording in the system message plus the vector on every
  token; pair_guided: the wording guided (g = 1.5 against the opposite wording) plus the vector, whose
  twin carries no vector;
- adapter: every row under a value adapter (two rank-8 LoRA adapters on q/v/o/up/down of every layer, in
  turn, random weights of the trained adapters' shape: the cost does not depend on the values), applied
  per row by the module hooks.

Prints generated tokens per second (median of rounds) and the cost per generated token relative to
plain (goals in the lever issue: vector <= 1.05x, guided <= 2.2x).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _timing import machine

from causalguard.adapters.hf.hooks import install_steering_hooks
from causalguard.adapters.hf.interventions import Scope
from causalguard.adapters.hf.value_adapters import (
    ADAPTER_CARD,
    ADAPTER_SCHEMA,
    install_adapter_hooks,
    load_value_adapter,
)
from causalguard.adapters.hf.vectors import load_vectors
from causalguard.bundle.format import shipped_bundle_dir
from causalguard.graphs.levers.variants import REPLY_STYLE_WORDINGS
from causalguard.models import load_model
from causalguard.runtime.batcher import ContinuousBatcher, DecodeSettings
from causalguard.runtime.generation import GenerationRow, chat_prompt_ids
from causalguard.runtime.guidance import Guidance

QUESTIONS = (
    "What matters most in life?",
    "Should I help a stranger?",
    "How do I become powerful?",
    "Describe a perfect weekend.",
    "I have a free weekend. Any ideas?",
    "How should I spend my savings?",
    "My friend lied to me. What now?",
    "Is it worth learning to cook?",
)
SYSTEM = "You are a helpful assistant."


def _random_adapter(lm, folder: Path, seed: int):  # type: ignore[no-untyped-def]
    """A rank-8 adapter of the shape 'levers adapters' trains, with random weights (for timing only)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    peft_model = get_peft_model(
        copy.deepcopy(lm.model),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"]),
    )
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.01)
    peft_model.save_pretrained(str(folder))
    (folder / ADAPTER_CARD).write_text(
        json.dumps(
            {"schema": ADAPTER_SCHEMA, "model_fingerprint": lm.fingerprint, "value": "benevolence", "direction": 1}
        )
    )
    return load_value_adapter(folder, lm.model, fingerprint=lm.fingerprint)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    lm = load_model("smollm2-135m-instruct")
    vectors = load_vectors(
        shipped_bundle_dir("smollm2-135m-instruct") / "vectors",
        hidden_size=lm.hidden_size,
        num_layers=lm.num_layers,
        fingerprint=lm.fingerprint,
    )
    values = ("benevolence", "power")
    steer_with = [vectors.intervention(values[i % 2], 0.15) for i in range(args.rows)]
    questions = [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)] + f" ({i})"} for i in range(args.rows)]
    plain = [GenerationRow(chat_prompt_ids(lm, [q], SYSTEM, [])) for q in questions]
    vector = [GenerationRow(row.prompt, (steer_with[i],)) for i, row in enumerate(plain)]
    everywhere = [vectors.intervention(values[i % 2], 0.15, Scope("all")) for i in range(args.rows)]
    vector_all = [GenerationRow(row.prompt, (everywhere[i],)) for i, row in enumerate(plain)]
    up, down = REPLY_STYLE_WORDINGS["benevolence"]
    guided = [
        GenerationRow(
            chat_prompt_ids(lm, [q], SYSTEM, [up]),
            (),
            None,
            Guidance(2.0, tuple(chat_prompt_ids(lm, [q], SYSTEM, [down]))),
        )
        for q in questions
    ]
    pair = [GenerationRow(chat_prompt_ids(lm, [q], SYSTEM, [up]), (everywhere[i],)) for i, q in enumerate(questions)]
    pair_guided = [
        GenerationRow(row.prompt, row.interventions, None, Guidance(1.5, guided[i].guidance.negative_prompt))  # type: ignore[union-attr]
        for i, row in enumerate(pair)
    ]
    scratch = Path(tempfile.mkdtemp(prefix="bench-adapters-"))
    adapters = [_random_adapter(lm, scratch / f"a{k}", k) for k in range(2)]
    adapter = [GenerationRow(row.prompt, (adapters[i % 2].intervention(1.0),)) for i, row in enumerate(plain)]
    arms = {
        "plain": plain,
        "vector": vector,
        "vector_all": vector_all,
        "guided": guided,
        "pair": pair,
        "pair_guided": pair_guided,
        "adapter": adapter,
    }
    rates: dict[str, list[float]] = {name: [] for name in arms}
    with (
        install_steering_hooks(lm.model, sorted(vectors.layers())),
        install_adapter_hooks(lm.model, adapters),
        ContinuousBatcher(lm, max_rows=2 * args.rows, prefix_cache_tokens=0) as batcher,
    ):
        batcher._eos = set()  # every row runs its whole budget: equal work per arm (a benchmark-only knob)
        for rows in arms.values():  # warm-up
            for row in rows[:2]:
                batcher.submit(row, DecodeSettings(4)).result()
        for _ in range(args.rounds):
            for name, rows in arms.items():
                start = time.perf_counter()
                jobs = [batcher.submit(r, DecodeSettings(args.max_tokens)) for r in rows]
                tokens = sum(len(job.result().tokens) for job in jobs)
                rates[name].append(tokens / (time.perf_counter() - start))
    print(f"machine: {machine()}")
    print(f"{args.rows} rows x {args.max_tokens} tokens, {args.rounds} rounds, greedy, one continuous batcher")
    base = statistics.median(rates["plain"])
    for name in arms:
        rate = statistics.median(rates[name])
        print(
            f"  {name:>10}: {rate:7.1f} generated tokens/s (rounds: {', '.join(f'{r:.1f}' for r in rates[name])}); "
            f"cost per token {base / rate:.2f}x plain"
        )


if __name__ == "__main__":
    main()
