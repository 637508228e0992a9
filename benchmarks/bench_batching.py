"""Continuous batching vs two-at-a-time: generated tokens per second at 16 concurrent clients.

    .venv/bin/python benchmarks/bench_batching.py [--requests 32] [--clients 16] [--max-tokens 48] [--rounds 3]

Starts two ``causalguard serve`` processes on the default model with the same profiles: the baseline
(``batching: false, max_concurrency: 2``, one HF ``generate`` call per request, as before batching) and
the batched server (``batching: true, max_concurrency: 16``). Each round sends the same requests
(mixed profiles: a role lever, an SAE lever, the unguarded model; greedy) from ``--clients`` threads to
one server, then the other, so drift affects both alike. Prints tokens per second (median over
rounds), p50/p95 request latency, the ratio, how many replies differ between the two servers
(greedy decoding: they should not), and the ceiling: what a decode step of ``--clients`` rows allows
on this machine if prefill and serving cost nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from _timing import machine

from causalguard.server.process import serve_in_process

CONFIG = """\
model: smollm2-135m-instruct
units: survey
targets:
  benevolence: {{direction: increase}}
method: role
profiles:
  less-power:
    targets:
      power: {{direction: decrease}}
    method: sae
  plain: {{}}
audit:
  enabled: false
server:
  batching: {batching}
  max_concurrency: {rows}
  max_queue: 256
  max_tokens_limit: 256
"""
PROMPTS = (
    "What matters most in life?",
    "Should I help a stranger?",
    "How do I become powerful?",
    "Describe a perfect weekend.",
    "I have a free weekend. Any ideas?",
    "How should I spend my savings?",
    "My friend lied to me. What now?",
    "Is it worth learning to cook?",
)
PROFILES = ("default", "less-power", "plain")


def requests_for(count: int, max_tokens: int) -> list[dict[str, Any]]:
    return [
        {
            "model": f"smollm2-135m-instruct:{PROFILES[i % len(PROFILES)]}",
            "max_tokens": max_tokens,
            "temperature": 0,
            "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
        }
        for i in range(count)
    ]


def drive(url: str, bodies: list[dict[str, Any]], clients: int) -> tuple[float, list[float], list[str], int]:
    """Send every body from ``clients`` threads; (wall seconds, latencies, replies, completion tokens)."""
    latencies: list[float] = [0.0] * len(bodies)
    replies: list[str] = [""] * len(bodies)
    tokens = [0] * len(bodies)

    def one(i: int) -> None:
        start = time.perf_counter()
        response = httpx.post(f"{url}/v1/chat/completions", json=bodies[i], timeout=600)
        response.raise_for_status()
        body = response.json()
        latencies[i] = time.perf_counter() - start
        replies[i] = body["choices"][0]["message"]["content"]
        tokens[i] = body["usage"]["completion_tokens"]

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(len(bodies))))
    return time.perf_counter() - start, latencies, replies, sum(tokens)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bodies = requests_for(args.requests, args.max_tokens)
    arms = {"two at a time": ("false", 2), "batched": ("true", args.clients)}
    rates: dict[str, list[float]] = {name: [] for name in arms}
    latencies: dict[str, list[float]] = {name: [] for name in arms}
    replies: dict[str, list[str]] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve_in_process(_config(tmp, "base", *arms["two at a time"]), Path(tmp) / "base.log") as base,
        serve_in_process(_config(tmp, "batched", *arms["batched"]), Path(tmp) / "batched.log") as batched,
    ):
        servers = {"two at a time": base, "batched": batched}
        drive(base.url, bodies[:2], 2)  # warm both up
        drive(batched.url, bodies[:2], 2)
        for _ in range(args.rounds):
            for name, server in servers.items():
                wall, lat, texts, tokens = drive(server.url, bodies, args.clients)
                rates[name].append(tokens / wall)
                latencies[name].extend(lat)
                replies[name] = texts
    differ = sum(a != b for a, b in zip(replies["two at a time"], replies["batched"], strict=True))
    print(f"machine: {machine()}")
    print(
        f"{args.requests} requests x {args.rounds} rounds, {args.clients} clients, max_tokens {args.max_tokens}, "
        f"greedy, profiles {', '.join(PROFILES)}"
    )
    for name in arms:
        lat = latencies[name]
        print(
            f"  {name:>13}: {statistics.median(rates[name]):7.1f} generated tokens/s (rounds: "
            f"{', '.join(f'{r:.1f}' for r in rates[name])}); latency p50 {statistics.median(lat):.2f} s, "
            f"p95 {percentile(lat, 0.95):.2f} s"
        )
    ratio = statistics.median(rates["batched"]) / statistics.median(rates["two at a time"])
    print(
        f"  ratio batched / two at a time: {ratio:.2f}x; replies that differ between the servers: "
        f"{differ}/{len(bodies)}"
    )
    step = decode_step_seconds(args.clients, width=96 + args.max_tokens // 2)
    ceiling = args.clients / step
    print(
        f"  ceiling: one {args.clients}-row decode step takes {step * 1000:.0f} ms (median of 10) = "
        f"{ceiling:.1f} tokens/s = {ceiling / statistics.median(rates['two at a time']):.2f}x two at a time, "
        "what batching would reach with free prefill and no serving overhead"
    )


def decode_step_seconds(rows: int, width: int, repeats: int = 10) -> float:
    """Median seconds of one decode step of ``rows`` rows over a ``width``-token cache (the default model)."""
    import torch

    from causalguard.models import load_model

    model = load_model("smollm2-135m-instruct").model
    times = []
    with torch.inference_mode():
        prompt = torch.randint(0, 40000, (rows, width))
        out = model(input_ids=prompt, use_cache=True, logits_to_keep=1)
        layers = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        token, mask = torch.randint(0, 40000, (rows, 1)), torch.ones(rows, width + 1, dtype=torch.long)
        for _ in range(repeats):
            for layer, (keys, values) in zip(out.past_key_values.layers, layers, strict=True):
                layer.keys, layer.values = keys, values  # the same cache width every time
            start = time.perf_counter()
            model(
                input_ids=token,
                attention_mask=mask,
                position_ids=torch.full((rows, 1), width),
                past_key_values=out.past_key_values,
                use_cache=True,
            )
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _config(tmp: str, name: str, batching: str, rows: int) -> Path:
    path = Path(tmp) / f"{name}.yaml"
    path.write_text(CONFIG.format(batching=batching, rows=rows))
    return path


if __name__ == "__main__":
    main()
