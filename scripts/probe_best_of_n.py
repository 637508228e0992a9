"""Probe for a future lever (issue 25): best-of-n sampling reranked by the probe judge, checked by the
Gemma contrast judge, on dev prompts only.

    .venv/bin/python scripts/probe_best_of_n.py [N=4] [TEMPERATURE=0.8]

20 balanced dev prompts x 2 personas (seed 3901): the greedy reply and N sampled ones per pair; per value
and direction, the candidate the probe judge scores highest (lowest) on the value. Prints, for both judges,
the chosen reply minus the greedy one and minus the mean of the N candidates (the selection alone), with
95% t-intervals; writes every reply and figure to /tmp/probe_best_of_n_N.json. About 75 minutes on 2 cores
(the contrast judge scores 10 values x 2 framings x 2 stances per reply).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np

from causalguard.bundle.format import load_bundle, shipped_bundle_dir
from causalguard.graphs.behaviour.report import reply_personas, t_interval
from causalguard.judging.judge import ContrastJudge, ValueDefinition, load_probe_judge
from causalguard.judging.prompt_sets import load_prompts
from causalguard.models import load_model
from causalguard.runtime.generation import GenerationRow, chat_prompt_ids, generate_rows
from causalguard.values import load_inventory

Key = tuple[str, str, Any]  # persona, prompt, "greedy" or the sample's index


def _generate(lm: Any, rows: list[GenerationRow], temperature: float) -> list[str]:
    out = []
    for start in range(0, len(rows), 16):
        for g in generate_rows(lm, rows[start : start + 16], max_new_tokens=64, temperature=temperature):
            out.append(lm.tokenizer.decode(g.tokens, skip_special_tokens=True).strip())
    return out


def _fmt(x: dict[str, float]) -> str:
    return f"{x['mean']:+.3f} ({x['ci_low']:+.3f}..{x['ci_high']:+.3f})"


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    temperature = float(sys.argv[2]) if len(sys.argv) > 2 else 0.8
    lm = load_model("smollm2-135m-instruct")
    bundle = load_bundle(shipped_bundle_dir("smollm2-135m-instruct"), expected_fingerprint=lm.fingerprint)
    assert bundle.path is not None
    judge = load_probe_judge(bundle.path, lm)
    dims = list(judge.dimensions)
    prompts = list(load_prompts(dimensions=dims).split("dev").balanced_slice(0, 20))
    personas = reply_personas(2, 3901)
    started = time.time()
    greedy_rows, greedy_keys, sampled_rows, sampled_keys = [], [], [], []
    for p in personas:
        for q in prompts:
            ids = chat_prompt_ids(lm, [{"role": "user", "content": q.text}], p.system_prompt, [])
            greedy_rows.append(GenerationRow(ids))
            greedy_keys.append((p.id, q.id, "greedy"))
            for s in range(n):
                sampled_rows.append(GenerationRow(ids, seed=1000 + s))
                sampled_keys.append((p.id, q.id, s))
    texts: dict[Key, str] = dict(zip(greedy_keys, _generate(lm, greedy_rows, 0.0), strict=True))
    texts.update(zip(sampled_keys, _generate(lm, sampled_rows, temperature), strict=True))
    print(f"generated {len(texts)} replies in {time.time() - started:.0f}s", flush=True)
    keys = list(texts)
    probe = dict(zip(keys, judge.score([texts[k] for k in keys]), strict=True))
    inventory = load_inventory("schwartz-basic-10")
    second_judge = ContrastJudge(
        load_model("gemma3-270m"),
        [ValueDefinition(d.name, d.display, d.definition, d.opposite_text) for d in inventory.dimensions],
    )
    assert list(second_judge.dimensions) == dims
    started = time.time()
    second = dict(zip(keys, second_judge.score([texts[k] for k in keys]), strict=True))
    print(f"second judge in {time.time() - started:.0f}s", flush=True)
    results = {}
    for j, value in enumerate(dims):
        for sign, name in ((1, "up"), (-1, "down")):
            rows: dict[str, list[float]] = {
                "probe_vs_greedy": [],
                "second_vs_greedy": [],
                "probe_vs_mean": [],
                "second_vs_mean": [],
            }
            for p in personas:
                for q in prompts:
                    candidates = [(p.id, q.id, s) for s in range(n)]
                    best = max(candidates, key=lambda c, j=j, sign=sign: sign * probe[c][j])
                    greedy = (p.id, q.id, "greedy")
                    for judge_name, scores in (("probe", probe), ("second", second)):
                        rows[f"{judge_name}_vs_greedy"].append(scores[best][j] - scores[greedy][j])
                        rows[f"{judge_name}_vs_mean"].append(
                            scores[best][j] - float(np.mean([scores[c][j] for c in candidates]))
                        )
            figures = {k: t_interval(np.array(v)) for k, v in rows.items()}
            results[f"{value}-{name}"] = figures
            print(
                f"{value}-{name:4s} vs greedy: probe {_fmt(figures['probe_vs_greedy'])}, second "
                f"{_fmt(figures['second_vs_greedy'])} | vs the candidates' mean: probe "
                f"{_fmt(figures['probe_vs_mean'])}, second {_fmt(figures['second_vs_mean'])}",
                flush=True,
            )
    with open(f"/tmp/probe_best_of_n_{n}.json", "w", encoding="utf-8") as handle:
        json.dump({"texts": {"|".join(map(str, k)): v for k, v in texts.items()}, "results": results}, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
