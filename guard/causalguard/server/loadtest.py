"""A bounded load test against a running guard server: mixed profiles, some clients hanging up mid-stream.

Each distinct (prompt, profile) request is first run alone; under load every completed response must
be identical to it (greedy decoding). Reports status counts, mismatches and latency percentiles.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

PROMPTS = (
    "What matters most in life?",
    "Should I help a stranger?",
    "How do I become powerful?",
    "Describe a perfect weekend.",
)


@dataclass
class LoadReport:
    requests: int
    statuses: dict[int, int] = field(default_factory=dict)
    mismatches: int = 0
    disconnected: int = 0
    latencies: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    def summary(self) -> str:
        statuses = dict(sorted(self.statuses.items()))
        return (
            f"{self.requests} requests in {self.wall_seconds:.1f} s: statuses {statuses}, "
            f"{self.disconnected} disconnected on purpose, {self.mismatches} mismatches; latency "
            f"p50 {statistics.median(self.latencies):.2f} s, p95 {self.percentile(0.95):.2f} s"
        )


def _body(model: str, prompt: str, profile: str, max_tokens: int, stream: bool = False) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "profile": profile,
        "stream": stream,
    }


def run_load(
    url: str,
    model: str,
    profiles: Sequence[str],
    *,
    requests: int = 200,
    concurrency: int = 16,
    max_tokens: int = 8,
    disconnect_every: int = 10,
) -> LoadReport:
    import httpx

    endpoint = f"{url}/v1/chat/completions"
    cases = list(itertools.product(PROMPTS, profiles))
    alone: dict[tuple[str, str], str] = {}
    with httpx.Client(timeout=120) as client:
        for prompt, profile in cases:
            reply = client.post(endpoint, json=_body(model, prompt, profile, max_tokens))
            reply.raise_for_status()
            alone[(prompt, profile)] = reply.json()["choices"][0]["message"]["content"]
    report = LoadReport(requests)
    lock = threading.Lock()

    def one(index: int) -> None:
        prompt, profile = cases[index % len(cases)]
        started = time.perf_counter()
        with httpx.Client(timeout=120) as client:
            if disconnect_every and index % disconnect_every == disconnect_every - 1:
                with client.stream("POST", endpoint, json=_body(model, prompt, profile, 200, stream=True)) as r:
                    status = r.status_code
                    for line in r.iter_lines():
                        if line.startswith("data: ") and '"content": "' in line and '"content": ""' not in line:
                            break  # hang up after the first real token
                with lock:
                    report.disconnected += 1
                    report.statuses[status] = report.statuses.get(status, 0) + 1
                return
            reply = client.post(endpoint, json=_body(model, prompt, profile, max_tokens))
        elapsed = time.perf_counter() - started
        with lock:
            report.statuses[reply.status_code] = report.statuses.get(reply.status_code, 0) + 1
            if reply.status_code == 200:
                report.latencies.append(elapsed)
                if reply.json()["choices"][0]["message"]["content"] != alone[(prompt, profile)]:
                    report.mismatches += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(requests)))
    report.wall_seconds = time.perf_counter() - started
    return report
