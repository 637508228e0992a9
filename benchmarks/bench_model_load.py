"""Model load time: cold (dequantise the GGUF) vs cached (safetensors copy), interleaved, medians.

.venv/bin/python benchmarks/bench_model_load.py [--repeats 3] [--model smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse

from _timing import interleaved, machine, median

from causalguard.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    load_model(args.model)  # make sure the cache exists
    times = interleaved(
        {"cold (GGUF)": lambda: load_model(args.model, use_cache=False), "cached": lambda: load_model(args.model)},
        args.repeats,
    )
    print(f"machine: {machine()}; model {args.model}; {args.repeats} interleaved repeats; medians")
    for name, t in times.items():
        print(f"  {name:12s} {median(t):7.2f} s")
    print(f"  cached is {median(times['cold (GGUF)']) / median(times['cached']):.0f}x faster")


if __name__ == "__main__":
    main()
