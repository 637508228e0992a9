"""Items per second of each scoring method on the default model, and prefix reuse on vs off.

Arms are interleaved; each arm scores the same items under the same role. Prints medians and the
ratios the survey issue targets (logit scoring >= 20x faster than generate-then-parse).

    .venv/bin/python benchmarks/bench_scoring.py [--repeats 3] [--generate-items 16]
"""

from __future__ import annotations

import argparse

from _timing import interleaved, machine, median

from causalguard import NoSteering, load_inventory, value_roles
from causalguard.models import load_model
from causalguard.scoring import GenerateParse, StatementContrast, YesNoLogOdds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--generate-items", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--dtype", default="float32", help="float32 or bfloat16")
    args = parser.parse_args()

    lm = load_model(dtype=args.dtype)
    inventory = load_inventory()
    items = list(inventory.items())
    role = value_roles(inventory)[0]
    gen_items = items[: args.generate_items]
    arms = {
        "yesno (prefix reuse)": (YesNoLogOdds(), items),
        "yesno (no reuse)": (YesNoLogOdds(reuse_prefix=False), items),
        "statement (prefix reuse)": (StatementContrast(), items),
        "statement (no reuse)": (StatementContrast(reuse_prefix=False), items),
        "generate": (GenerateParse(max_new_tokens=args.max_new_tokens), gen_items),
    }
    calls = {name: (lambda m=m, i=i: m.score(lm, role, NoSteering(), i)) for name, (m, i) in arms.items()}
    for call in calls.values():  # warm-up
        call()
    times = interleaved(calls, args.repeats)
    rate = {name: len(arms[name][1]) / median(t) for name, t in times.items()}
    print(f"machine: {machine()}; model {lm.name} ({args.dtype}); {args.repeats} interleaved repeats; medians")
    for name, r in rate.items():
        print(f"  {name:26s} {r:8.1f} items/s  (median {median(times[name]):.2f} s for {len(arms[name][1])} items)")
    print("ratios:")
    print(f"  yesno / generate:        {rate['yesno (prefix reuse)'] / rate['generate']:.1f}x")
    print(f"  statement / generate:    {rate['statement (prefix reuse)'] / rate['generate']:.1f}x")
    print(f"  prefix reuse, yesno:     {rate['yesno (prefix reuse)'] / rate['yesno (no reuse)']:.2f}x")
    print(f"  prefix reuse, statement: {rate['statement (prefix reuse)'] / rate['statement (no reuse)']:.2f}x")


if __name__ == "__main__":
    main()
