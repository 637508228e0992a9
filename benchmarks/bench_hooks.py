"""Per-token cost of SAE feature hooks during generation: 1, 4 and 16 clamped features vs no hooks.

    .venv/bin/python benchmarks/bench_hooks.py [--tokens 32] [--repeats 5]

Greedy generation of a fixed length (min_new_tokens = max_new_tokens) on the default model with the
shipped SAE; arms interleaved ("no hooks": nothing installed; "idle hook": the dispatcher installed
with no active plan, as for unsteered requests on a guarded model); per-token = (time for N+1
tokens - time for 1 token) / N, so prefill
is left out. Also tries sae-lens's own steering path (HookedSAETransformer) and reports why not when
it cannot run here.
"""

from __future__ import annotations

import argparse

import torch
from _timing import interleaved, machine, median

from causalguard.adapters.hf import FeatureEdit, SaeIntervention, install_steering_hooks, load_sae, steer
from causalguard.adapters.hf.hooks import SteeringPlan
from causalguard.bundle.format import shipped_bundle_dir
from causalguard.models import load_model
from causalguard.models.prompting import chat_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    lm = load_model("smollm2-135m-instruct")
    sae = load_sae(shipped_bundle_dir("smollm2-135m-instruct") / "sae", lm)
    text = chat_text(lm.tokenizer, None, "Tell me about the values that guide your life.")
    ids = torch.tensor([lm.tokenizer(text, add_special_tokens=False).input_ids])

    def generate(n: int, plan: SteeringPlan | None, hooks: bool = True) -> None:
        if not hooks:
            with torch.inference_mode():
                lm.model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=n,
                    min_new_tokens=n,
                    do_sample=False,
                    pad_token_id=lm.pad_token_id,
                )
            return
        with torch.inference_mode(), install_steering_hooks(lm.model, [sae.layer]), steer(plan):
            lm.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=lm.pad_token_id,
            )

    plans: dict[str, SteeringPlan | None] = {"no hooks": None, "idle hook": None}
    for k in (1, 4, 16):
        edits = tuple(FeatureEdit(f, "clamp", 5.0) for f in range(0, 64, 64 // k)[:k])
        plans[f"{k} clamped"] = SteeringPlan.broadcast([SaeIntervention(sae, edits)])
    arms = {}
    for name, plan in plans.items():
        hooked = name != "no hooks"
        arms[f"{name} | 1"] = lambda p=plan, h=hooked: generate(1, p, h)
        arms[f"{name} | {args.tokens + 1}"] = lambda p=plan, h=hooked: generate(args.tokens + 1, p, h)
    generate(4, None)  # warm-up
    times = interleaved(arms, args.repeats)
    print(
        f"machine: {machine()}; layer {sae.layer}, d_sae {sae.d_sae}, {args.tokens} decode tokens, "
        f"{args.repeats} interleaved repeats (medians)"
    )
    base = None
    for name in plans:
        per_token = (median(times[f"{name} | {args.tokens + 1}"]) - median(times[f"{name} | 1"])) / args.tokens
        base = base or per_token
        print(f"  {name:12s} {per_token * 1000:7.2f} ms/token   x{per_token / base:.3f} vs no hooks")
    try:
        from sae_lens import HookedSAETransformer

        HookedSAETransformer.from_pretrained_no_processing(
            "HuggingFaceTB/SmolLM2-135M-Instruct", hf_model=lm.model, tokenizer=lm.tokenizer, device="cpu"
        )
        print("  sae-lens HookedSAETransformer loaded; its timing is not implemented in this benchmark")
    except Exception as exc:
        print(f"  sae-lens HookedSAETransformer path: not run here ({type(exc).__name__}: {str(exc)[:160]})")


if __name__ == "__main__":
    main()
