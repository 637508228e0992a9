"""Added latency of proxy mode: the same requests straight to llama.cpp's server and through the guard.

    .venv/bin/python benchmarks/bench_proxy.py [--requests 40] [--max-tokens 16]

Starts llama.cpp's OpenAI-compatible server (scripts/install-llama-cpp-server.sh) on the embedded
SmolLM2 GGUF and ``causalguard serve`` in proxy mode in front of it (profile 'plain': no levers, so both
arms send the same messages), then alternates direct and proxied requests: p50/p95 of the whole
non-streamed request and of the time to the first streamed token, and the proxy's added median.
Targets (issue 15): under 5 ms added at p50, and time to first token within 5 ms.

A third arm is a second guard with the live monitor judging every reply (``sample_rate: 1``) and reply
audits running against the same single-slot upstream (a stimulation-up profile, so there is a plan to
audit): what an operator's defaults cost the user, as a ratio to the plain proxy in the same run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _timing import machine

from causalguard.models.registry import EMBEDDED_MODELS
from causalguard.server.process import free_port, serve_in_process

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
COUNTER = iter(range(10**9))  # every request asks something new: llama.cpp reuses a cached prompt prefix, and
# a request repeating the one before it would skip most of its prefill (and flatter whichever arm came second)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _timed(client: httpx.Client, url: str, model: str, max_tokens: int, stream: bool) -> float | None:
    """Seconds to the whole reply, or to the first streamed text (None: the model streamed no text, e.g. an
    immediate end of sequence; such a request has no first token to time)."""
    ask = {"role": "user", "content": f"Name a colour, then the number {next(COUNTER)}."}
    body = {"model": model, "messages": [SYSTEM, ask], "max_tokens": max_tokens, "temperature": 0, "stream": stream}
    start = time.perf_counter()
    if not stream:
        client.post(url, json=body).raise_for_status()
        return time.perf_counter() - start
    with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: {") and '"content": "' in line and '"content": ""' not in line:
                return time.perf_counter() - start
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    port = free_port()
    gguf = EMBEDDED_MODELS["smollm2-135m-instruct"].locate_gguf()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        upstream = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(gguf),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--model_alias",
                "up",
                "--n_threads",
                "2",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        direct_url = f"http://127.0.0.1:{port}/v1"
        try:
            for _ in range(240):
                try:
                    if httpx.get(f"{direct_url}/models", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            config = folder / "guard.yaml"
            config.write_text(
                "model: smollm2-135m-instruct\n"  # no operator prompt: both arms send the same messages
                "profiles:\n  plain: {}\naudit: {enabled: false}\n"
                f"upstream:\n  base_url: {direct_url}\n  model: up\n"
            )
            busy = folder / "busy.yaml"
            busy.write_text(
                "model: smollm2-135m-instruct\nunits: survey\nmethod: role\n"
                "targets:\n  stimulation: {direction: increase}\nprofiles:\n  plain: {}\n"
                "audit: {interval_seconds: 5, prompts_per_audit: 2, max_new_tokens: 32}\n"
                "monitor: {sample_rate: 1.0}\n"
                f"upstream:\n  base_url: {direct_url}\n  model: up\n"
            )
            with (
                serve_in_process(config, folder / "server.log") as guard,
                serve_in_process(busy, folder / "busy.log") as watched,
                httpx.Client(timeout=120) as client,
            ):
                arms = {
                    "direct": (f"{direct_url}/chat/completions", "up"),
                    "proxied": (f"{guard.url}/v1/chat/completions", "smollm2-135m-instruct:plain"),
                    "proxied+monitor+audits": (f"{watched.url}/v1/chat/completions", "smollm2-135m-instruct:plain"),
                }
                results: dict[tuple[str, bool], list[float]] = {(a, s): [] for a in arms for s in (False, True)}
                empty = dict.fromkeys(arms, 0)
                for stream in (False, True):
                    for url, model in arms.values():  # warm-up
                        _timed(client, url, model, args.max_tokens, stream)
                    for _ in range(args.requests):
                        for name, (url, model) in arms.items():
                            seconds = _timed(client, url, model, args.max_tokens, stream)
                            if seconds is None:
                                empty[name] += 1
                            else:
                                results[(name, stream)].append(seconds)
        finally:
            upstream.terminate()
            upstream.wait(30)
    print(f"machine: {machine()}; {args.requests} requests per arm, interleaved, {args.max_tokens} tokens")
    if any(empty.values()):
        print(f"  streams with no text (immediate end of sequence; not timed): {empty}")
    for stream, what in ((False, "whole request"), (True, "time to first token")):
        direct, proxied = results[("direct", stream)], results[("proxied", stream)]
        d50, d95, p50, p95 = (_quantile(v, q) * 1e3 for v in (direct, proxied) for q in (0.5, 0.95))
        w50, w95 = (_quantile(results[("proxied+monitor+audits", stream)], q) * 1e3 for q in (0.5, 0.95))
        print(
            f"  {what:20s} direct p50 {d50:7.1f} ms  p95 {d95:7.1f} | proxied p50 {p50:7.1f} ms  p95 {p95:7.1f}"
            f" | added p50 {p50 - d50:+.1f} ms (target < 5 ms)"
        )
        print(
            f"  {'':20s} with monitor + audits: p50 {w50:7.1f} ms  p95 {w95:7.1f} | {w50 / p50:.2f}x the plain "
            f"proxy at p50, {w95 / p95:.2f}x at p95"
        )


if __name__ == "__main__":
    main()
