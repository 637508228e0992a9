"""Probe for a future lever kind (issue 25): a reply-style wording and a steering vector together, on dev
prompts only.

    .venv/bin/python scripts/probe_pair_levers.py [STRENGTH=0.1] [WORK=runs/probe-pair-levers]

Single levers on SmolLM2-135M split: vectors at in-range strengths move the probe judge that selected
them but rarely the Gemma contrast judge, and guided wordings move both judges but recite their
instruction. This asks whether the two together move the second judge while replies stay in range.
Per direction not yet steerable (14), two pairs: the reply-style wording in the system message (g = 1)
plus the shipped vector at STRENGTH median residual norms on every token, and the same wording amplified
by guidance at g = 1.5 against the opposite pole's wording (the twin carries no vector, so guidance
amplifies both the wording and the vector). Dev prompts 241-260 of the balanced order x the assistant
prompt and 1 fresh persona (seed 2501) = 40 pairs per lever, which no lever was selected on.

Prints per lever the target's change by the three judges (95% t) and degraded replies against
unguarded (one-sided Fisher); writes figures and replies under WORK. About 40 minutes on 2 cores.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from probe_judging import judge_conditions

from causalguard.adapters.hf import Scope
from causalguard.adapters.hf.vectors import load_vectors
from causalguard.bundle.format import load_bundle, shipped_bundle_dir
from causalguard.graphs.behaviour.replies import ReplyCondition, ReplySettings, ReplyStore, run_steered_replies
from causalguard.graphs.behaviour.reply_backends import BatcherReplies
from causalguard.graphs.behaviour.report import reply_personas
from causalguard.graphs.levers.variants import REPLY_STYLE_WORDINGS
from causalguard.judging.judge import load_probe_judge
from causalguard.judging.prompt_sets import load_prompts
from causalguard.models import load_model

STEERABLE = {("benevolence", 1), ("stimulation", 1), ("achievement", 1), ("universalism", 1), ("self_direction", 1)}
STEERABLE |= {("stimulation", -1)}


def main() -> int:
    strength = float(sys.argv[1]) if len(sys.argv) > 1 else 0.1
    work = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("runs/probe-pair-levers")
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    lm = load_model("smollm2-135m-instruct")
    bundle_dir = shipped_bundle_dir("smollm2-135m-instruct")
    bundle = load_bundle(bundle_dir, expected_fingerprint=lm.fingerprint)
    assert bundle.vectors_dir is not None and bundle.behaviour is not None
    vectors = load_vectors(
        bundle.vectors_dir, hidden_size=lm.hidden_size, num_layers=lm.num_layers, fingerprint=lm.fingerprint
    )
    judge = load_probe_judge(bundle_dir, lm)
    dims = list(judge.dimensions)

    conditions = [ReplyCondition("none")]
    for value in dims:
        for sign in (1, -1):
            if (value, sign) in STEERABLE:
                continue
            inclined, disinclined = REPLY_STYLE_WORDINGS[value]
            wording, opposite = (inclined, disinclined) if sign > 0 else (disinclined, inclined)
            vector = vectors.intervention(value, sign * strength, Scope("all"))
            tag = f"{value}:{'+' if sign > 0 else '-'}:L{vectors.entries[value].layer}:{strength:g}:all"
            conditions.append(ReplyCondition(f"pair:role+vector:{tag}", (wording,), (vector,)))
            conditions.append(ReplyCondition(f"pair:guided1.5+vector:{tag}", (wording,), (vector,), 1.5, (opposite,)))

    prompts = list(load_prompts(dimensions=dims).split("dev").balanced_slice(240, 20))
    personas = reply_personas(2, 2501)
    settings = ReplySettings()
    identity = {"probe": "pair-levers", "strength": strength, "prompts": [q.id for q in prompts], "seed": 2501}
    store = ReplyStore(work, identity)
    replies = run_steered_replies(
        lm,
        conditions,
        personas,
        prompts,
        settings,
        store,
        batch_size=32,
        log=lambda line: print(line, flush=True),
        backend=BatcherReplies(),
    )
    results = judge_conditions(
        lm,
        bundle_dir,
        bundle,
        judge,
        work,
        conditions,
        personas,
        prompts,
        replies,
        lambda condition: (condition.split(":")[2], 1 if condition.split(":")[3] == "+" else -1),
    )
    doc = {"strength": strength, "results": results, "seconds": time.time() - started}
    (work / "figures.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {work / 'figures.json'} in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
