"""What the live value monitor costs serving: 16 concurrent clients in-process, monitor off vs on.

    .venv/bin/python benchmarks/bench_monitor_overhead.py [--clients 16] [--requests 3] [--max-tokens 48]
        [--rounds 3] [--rates 0.25,1.0]

One ``ValueGuard`` on the default model and its shipped bundle (stimulation up with its steering vector),
batching on, audits off. Each round runs ``--clients`` threads, each sending ``--requests`` requests
back to back (greedy), with the monitor off, then at each sample rate in ``--rates``, in turn, so drift
affects all alike. The judging runs while later requests generate, as under steady traffic; the last
replies' judging falls after the timed window (the queue is drained between arms). Prints generated
tokens/s and p50 request latency (medians of rounds) and their ratios to monitor-off (goal in the monitor
issue: <= 5% slower at the default rate).

``--proxy`` instead times what the monitor adds to a proxied request's path: ``observe_reply`` (compose,
sample, enqueue), per call, against a no-op, on a guard in proxy mode.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _timing import machine

from causalguard.runtime.value_guard import ValueGuard

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
CONFIG = """\
model: smollm2-135m-instruct
system_prompt: You are a helpful assistant.
targets:
  stimulation: {direction: increase}
method: vector
profiles:
  plain: {}
audit: {enabled: false}
monitor: {enabled: false}
"""


def _arm(guard: ValueGuard, clients: int, max_tokens: int, requests: int) -> tuple[float, float]:
    """Each client sends ``requests`` requests back to back, so the judging of earlier replies overlaps the
    generation of later ones (as under steady traffic); only the last replies' judging falls after the arm."""

    def client(i: int) -> list[tuple[int, float]]:
        out = []
        for k in range(requests):
            ask = [{"role": "user", "content": f"{QUESTIONS[(i + k) % len(QUESTIONS)]} ({i}.{k})"}]
            start = time.perf_counter()
            reply = guard.generate(ask, max_new_tokens=max_tokens)
            out.append((reply.completion_tokens, time.perf_counter() - start))
        return out

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(client, range(clients)) for r in rs]
    seconds = time.perf_counter() - start
    return sum(t for t, _ in results) / seconds, statistics.median(s for _, s in results)


def _with_monitor(guard: ValueGuard, rate: float | None) -> None:
    monitor = guard.config.monitor.model_copy(update={"enabled": rate is not None, "sample_rate": rate or 0.0})
    guard.reload(guard.config.model_copy(update={"monitor": monitor}))


def in_process(args: argparse.Namespace) -> None:
    rates = [float(x) for x in args.rates.split(",")]
    arms: dict[str, float | None] = {"off": None, **{f"rate {r:g}": r for r in rates}}
    tps: dict[str, list[float]] = {name: [] for name in arms}
    p50: dict[str, list[float]] = {name: [] for name in arms}
    judged = 0
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "guard.yaml"
        path.write_text(CONFIG)
        with ValueGuard.from_config(path, start_audits=False) as guard:
            assert guard.monitor is not None, "the shipped bundle has a value judge"
            for rate in arms.values():  # warm-up
                _with_monitor(guard, rate)
                _arm(guard, 2, 4, 1)
            guard.monitor.drain(120)
            for _ in range(args.rounds):
                for name, rate in arms.items():
                    _with_monitor(guard, rate)
                    rate_tps, latency = _arm(guard, args.clients, args.max_tokens, args.requests)
                    tps[name].append(rate_tps)
                    p50[name].append(latency)
                    guard.monitor.drain(120)
            judged = int(
                sum(
                    s.value
                    for family in guard.metrics.registry.collect()
                    for s in family.samples
                    if s.name == "causalguard_monitor_replies_total" and s.labels["outcome"] == "judged"
                )
            )
    print(f"machine: {machine()}")
    print(
        f"{args.clients} clients x {args.requests} requests x {args.max_tokens} tokens, {args.rounds} rounds, "
        f"greedy, batching on; "
        f"{judged} replies judged in all"
    )
    base_tps, base_p50 = statistics.median(tps["off"]), statistics.median(p50["off"])
    for name in arms:
        rate, latency = statistics.median(tps[name]), statistics.median(p50[name])
        print(
            f"  monitor {name:>9}: {rate:6.1f} tokens/s ({base_tps / rate:.3f}x the time per token of off), "
            f"p50 {latency:.2f} s ({latency / base_p50:.3f}x); rounds {', '.join(f'{r:.1f}' for r in tps[name])}"
        )


def proxy(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "guard.yaml"
        # proxy mode plans role levers only: in survey units (no role lever holds in reply units here)
        config = CONFIG.replace("method: vector", "method: role\nunits: survey")
        path.write_text(
            config.replace("monitor: {enabled: false}", "monitor: {sample_rate: 1.0, queue_size: 100000}")
            + "upstream: {base_url: 'http://127.0.0.1:9/v1', model: unused}\n"
        )
        with ValueGuard.from_config(path, start_audits=False) as guard:
            ask = [{"role": "user", "content": QUESTIONS[0]}]
            reply = "You could try a new hiking trail, or learn to cook a dish you have never made."
            n = args.calls
            start = time.perf_counter()
            for _ in range(n):
                guard.observe_reply("default", ask, reply)
            observed = (time.perf_counter() - start) / n
            start = time.perf_counter()
            for _ in range(n):
                pass
            empty = (time.perf_counter() - start) / n
            assert guard.monitor is not None
            guard.monitor.drain(600)
    print(f"machine: {machine()}")
    print(
        f"proxy mode, {n} calls: observe_reply {observed * 1e6:.1f} us per reply on the request path "
        f"(an empty loop: {empty * 1e6:.2f} us); judging happens on the monitor's thread"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3, help="Requests per client per arm, back to back.")
    parser.add_argument("--rates", default="0.25,1.0")
    parser.add_argument("--proxy", action="store_true")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    (proxy if args.proxy else in_process)(args)


if __name__ == "__main__":
    main()
