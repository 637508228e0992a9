"""Guard overhead vs the bare model: role mode and SAE mode, per token and end to end.

    .venv/bin/python benchmarks/bench_guard.py [--tokens 32] [--repeats 5]

Same conversation, greedy, the same output length in every arm (min_new_tokens = max_new_tokens),
arms interleaved. Bare = the model's own ``generate`` on the chat-templated prompt; role mode = the
guard with a role lever (its system prompt is longer: that shows in end-to-end time, not per token);
SAE mode = the guard with an SAE lever from the shipped catalog.
"""

from __future__ import annotations

import argparse

import torch
from _timing import interleaved, machine, median

from causalguard.bundle.catalog import load_catalog
from causalguard.bundle.format import shipped_bundle_dir
from causalguard.config import GuardConfig
from causalguard.models import load_model
from causalguard.runtime import ValueGuard

ASK = [{"role": "user", "content": "Tell me about the values that guide your life."}]


def _sae_target() -> dict:
    catalog = load_catalog(shipped_bundle_dir("smollm2-135m-instruct"))
    assert catalog is not None, "the shipped bundle has no catalog"
    lever = next(e for e in catalog.levers if e.kind == "sae" and e.target)
    return {lever.target: {"direction": "increase" if lever.direction > 0 else "decrease"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    lm = load_model("smollm2-135m-instruct")
    quiet = {
        "audit": {"enabled": False},
        "limits": {"max_perplexity_ratio": 100, "max_unparseable_increase": 1.0, "max_levers": 1},
    }
    config = GuardConfig.model_validate(
        {
            **quiet,
            "targets": {"benevolence": {"direction": "increase"}},
            "method": "role",
            "profiles": {"sae": {"targets": _sae_target(), "method": "sae"}},
        }
    )
    guard = ValueGuard(lm.model, lm.tokenizer, config, start_audits=False)
    text = lm.tokenizer.apply_chat_template(ASK, tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([lm.tokenizer(text, add_special_tokens=False).input_ids])

    def bare(n: int) -> None:
        with torch.inference_mode():
            lm.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=lm.pad_token_id,
            )

    def guarded(profile: str, n: int) -> None:
        guard.generate_batch([ASK], profiles=[profile], max_new_tokens=n, min_new_tokens=n)

    n = args.tokens + 1
    arms = {
        "bare | 1": lambda: bare(1),
        f"bare | {n}": lambda: bare(n),
        "role | 1": lambda: guarded("default", 1),
        f"role | {n}": lambda: guarded("default", n),
        "sae | 1": lambda: guarded("sae", 1),
        f"sae | {n}": lambda: guarded("sae", n),
    }
    with guard:
        bare(2)
        times = interleaved(arms, args.repeats)
        print(f"machine: {machine()}; {args.tokens} decode tokens, {args.repeats} interleaved repeats (medians)")
        print(
            f"  role lever: {[lever.id for lever in guard.plan().levers]}; "
            f"sae lever: {[lever.id for lever in guard.plan('sae').levers]}"
        )
    base_token = (median(times[f"bare | {n}"]) - median(times["bare | 1"])) / args.tokens
    base_total = median(times[f"bare | {n}"])
    for arm in ("bare", "role", "sae"):
        per_token = (median(times[f"{arm} | {n}"]) - median(times[f"{arm} | 1"])) / args.tokens
        total = median(times[f"{arm} | {n}"])
        print(
            f"  {arm:5s} {per_token * 1000:7.2f} ms/token (x{per_token / base_token:.3f})   "
            f"end to end {total * 1000:7.1f} ms (x{total / base_total:.3f})"
        )


if __name__ == "__main__":
    main()
