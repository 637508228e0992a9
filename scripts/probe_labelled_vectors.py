"""Probe for a future lever (issue 25): steering vectors from the labelled replies, on dev prompts only.

    .venv/bin/python scripts/probe_labelled_vectors.py [STRENGTH=0.15] [WORK=runs/probe-labelled-vectors]

The shipped vectors come from the model's own replies under inclined and disinclined wordings, which a
135M model barely tells apart (split-half AUROC about 0.6 per value, vectors/vectors.json). This reads
the labelled replies' **dev half** instead (10 high-pole and 10 low-pole replies per value, written to
differ in the value) back through the model as an assistant's reply, and takes the mean high-minus-low
residual over the reply's tokens at each value's shipped vector layer (DiffMean, as in AxBench). Each
direction is added on every token at STRENGTH median residual norms, for both poles of the 14
directions not yet steerable, on dev prompts 181-200 of the balanced order x the assistant prompt and 1
fresh persona (seed 2301) = 40 pairs per direction, which no lever was selected on.

Caveat: the bundle's probe judge and the Gemma probe were fitted on the same labelled texts, so these
vectors point where those judges read, and their effects by those judges may run high; the Gemma
contrast judge (value definitions, not these texts) is the check. Prints per direction the target's
change by the three judges (95% t) and degraded replies against unguarded (one-sided Fisher); writes
figures and replies under WORK. About 25 minutes on 2 cores.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from probe_judging import judge_conditions

from causalguard.adapters.hf import Scope
from causalguard.adapters.hf.vectors import VectorIntervention, load_vectors
from causalguard.bundle.format import load_bundle, shipped_bundle_dir
from causalguard.graphs.behaviour.replies import ReplyCondition, ReplySettings, ReplyStore, run_steered_replies
from causalguard.graphs.behaviour.reply_backends import BatcherReplies
from causalguard.graphs.behaviour.report import reply_personas
from causalguard.graphs.levers.labelled_vectors import labelled_directions
from causalguard.judging.judge import load_probe_judge
from causalguard.judging.labelled import load_labelled
from causalguard.judging.prompt_sets import load_prompts
from causalguard.models import load_model

STEERABLE = {("benevolence", 1), ("stimulation", 1), ("achievement", 1), ("universalism", 1), ("self_direction", 1)}
STEERABLE |= {("stimulation", -1)}


def main() -> int:
    strength = float(sys.argv[1]) if len(sys.argv) > 1 else 0.15
    work = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("runs/probe-labelled-vectors")
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    lm = load_model("smollm2-135m-instruct")
    bundle_dir = shipped_bundle_dir("smollm2-135m-instruct")
    bundle = load_bundle(bundle_dir, expected_fingerprint=lm.fingerprint)
    assert bundle.vectors_dir is not None and bundle.behaviour is not None
    shipped = load_vectors(
        bundle.vectors_dir, hidden_size=lm.hidden_size, num_layers=lm.num_layers, fingerprint=lm.fingerprint
    )
    judge = load_probe_judge(bundle_dir, lm)
    dims = list(judge.dimensions)

    # 1. directions from the labelled dev half, read back as the assistant's reply (the lever's own extraction)
    texts = load_labelled(dimensions=dims)
    units = labelled_directions(lm, texts, {value: shipped.entries[value].layer for value in dims})
    conditions = [ReplyCondition("none")]
    card: dict[str, dict[str, float]] = {}
    for value in dims:
        entry, unit = shipped.entries[value], units[value]
        card[value] = {"layer": entry.layer, "cosine_with_shipped": float(unit @ entry.direction.numpy())}
        for sign in (1, -1):
            if (value, sign) in STEERABLE:
                continue
            delta = torch.tensor(unit * sign * strength * entry.residual_norm, dtype=torch.float32)
            lever = f"labelled:{value}:{'+' if sign > 0 else '-'}:L{entry.layer}:{strength:g}:all"
            conditions.append(ReplyCondition(lever, (), (VectorIntervention(entry.layer, delta, Scope("all")),)))

    # 2. replies on dev prompts nothing selected on
    prompts = list(load_prompts(dimensions=dims).split("dev").balanced_slice(180, 20))
    personas = reply_personas(2, 2301)
    settings = ReplySettings()
    identity = {"probe": "labelled-vectors", "strength": strength, "prompts": [q.id for q in prompts], "seed": 2301}
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
        lambda condition: (condition.split(":")[1], 1 if condition.split(":")[2] == "+" else -1),
    )
    doc = {"strength": strength, "directions": card, "results": results, "seconds": time.time() - started}
    (work / "figures.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {work / 'figures.json'} in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
