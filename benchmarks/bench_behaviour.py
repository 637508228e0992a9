"""Behavioural measurement throughput: batched replies with per-row steering vs one request at a time,
and judge / quality items per second.

    .venv/bin/python benchmarks/bench_behaviour.py [--rows 16] [--tokens 32] [--repeats 3]

Replies: ``rows`` dev prompts, each row with its own plan (a third unsteered, a third with a role
lever, a third with an SAE lever from the shipped catalog), greedy, fixed length
(min_new_tokens = max_new_tokens), through ``generate_rows`` (the guard's code path). Arms, interleaved:
one batch of ``rows`` vs ``rows`` single-row calls; the outputs are compared token for token. Then
the judge (probe: all values from one pass; contrast: 2 poles x 2 framings per value) and reply quality
(two passes) per item, and what a full behavioural catalog run costs at the measured rates.
"""

from __future__ import annotations

import argparse
import time

from _timing import interleaved, machine, median

from causalguard.adapters.hf import install_steering_hooks, load_sae
from causalguard.bundle.format import load_bundle, shipped_bundle_dir
from causalguard.graphs.behaviour.report import lever_reply_condition
from causalguard.judging.judge import ContrastJudge, ValueDefinition, load_probe_judge
from causalguard.judging.prompt_sets import load_prompts
from causalguard.judging.reply_quality import reply_quality
from causalguard.models import load_model
from causalguard.runtime.generation import GenerationRow, chat_prompt_ids, generate_rows
from causalguard.values import load_inventory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    lm = load_model("smollm2-135m-instruct")
    folder = shipped_bundle_dir("smollm2-135m-instruct")
    bundle = load_bundle(folder, expected_fingerprint=lm.fingerprint)
    assert bundle.catalog is not None and bundle.sae_dir is not None
    sae = load_sae(bundle.sae_dir, lm)
    prompts = list(load_prompts().split("dev").balanced(args.rows))
    conditions = [
        lever_reply_condition(bundle.catalog.lever(i), sae, bundle.catalog)
        for i in ("role:benevolence:+", "sae:f2547:+0.25")
    ]
    rows = []
    for k, prompt in enumerate(prompts):
        cond = None if k % 3 == 0 else conditions[k % 3 - 1]
        ids = chat_prompt_ids(lm, prompt.messages(), "You are a helpful assistant.", cond.instructions if cond else ())
        rows.append(GenerationRow(ids, cond.interventions if cond else ()))
    kw = {"max_new_tokens": args.tokens, "min_new_tokens": args.tokens}
    outputs: dict[str, list[list[int]]] = {}

    def batched() -> None:
        outputs["batched"] = [g.tokens for g in generate_rows(lm, rows, **kw)]

    def single() -> None:
        outputs["single"] = [generate_rows(lm, [r], **kw)[0].tokens for r in rows]

    with install_steering_hooks(lm.model, [sae.layer]):
        times = interleaved({"one at a time": single, f"batch of {len(rows)}": batched}, args.repeats)
    same = sum(a == b for a, b in zip(outputs["batched"], outputs["single"], strict=True))
    print(f"machine: {machine()}")
    print(
        f"replies: {len(rows)} rows x {args.tokens} tokens, mixed per-row plans (none / role / SAE), greedy; "
        f"median of {args.repeats} interleaved repeats"
    )
    base = median(times["one at a time"])
    for name, ts in times.items():
        m = median(ts)
        print(f"  {name:14s} {m:7.2f} s  {len(rows) / m:6.2f} replies/s  speed-up x{base / m:.2f}")
    print(f"  identical outputs (batched vs alone): {same}/{len(rows)}")

    texts = [lm.tokenizer.decode(t, skip_special_tokens=True) for t in outputs["batched"]]
    judge = load_probe_judge(folder, lm)
    inv = load_inventory("schwartz-basic-10")
    contrast = ContrastJudge(
        lm, [ValueDefinition(d.name, d.display, d.definition, d.opposite_text) for d in inv.dimensions]
    )
    for name, run in (
        ("probe judge (all values)", lambda: judge.score(texts)),
        ("contrast judge (all values)", lambda: contrast.score(texts)),
        ("reply quality", lambda: reply_quality(lm, [p.text for p in prompts], texts)),
    ):
        start = time.perf_counter()
        run()
        elapsed = time.perf_counter() - start
        print(f"  {name:28s} {len(texts) / elapsed:7.2f} items/s")
    rate = len(rows) / median(times[f"batch of {len(rows)}"])
    catalog = len(bundle.catalog.levers) + 1
    replies = catalog * 40
    print(
        f"full behavioural catalog ({catalog} conditions x 20 prompts x 2 personas = {replies} replies of "
        f"{args.tokens} tokens): ~{replies / rate / 60:.0f} min of generation at {rate:.2f} replies/s"
    )


if __name__ == "__main__":
    main()
