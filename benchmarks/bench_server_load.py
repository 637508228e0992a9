"""Load test of the guard server on loopback: p50/p95 latency, status counts, identity with solo runs.

    .venv/bin/python benchmarks/bench_server_load.py [--requests 200] [--concurrency 16] [--max-tokens 8]

Starts ``causalguard serve`` on the default model (profiles: a role lever, an SAE lever if the bundle's
catalog has a usable one, and the unguarded model), then runs the load and prints the report.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _timing import machine

from causalguard.server.loadtest import run_load
from causalguard.server.process import serve_in_process

# Serving plumbing, not value claims: survey units plan these profiles (in reply units this model can only
# move stimulation; docs/behaviour.md, "What the replies show").
CONFIG = """\
model: smollm2-135m-instruct
units: survey
targets:
  benevolence: {direction: increase}
method: role
profiles:
  less-power:
    targets:
      power: {direction: decrease}
    method: auto
  plain: {}
audit:
  kind: survey
  interval_seconds: 30
server:
  max_concurrency: 2
  max_queue: 32
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "guard.yaml"
        config.write_text(CONFIG)
        with serve_in_process(config, Path(tmp) / "server.log") as server:
            report = run_load(
                server.url,
                "smollm2-135m-instruct",
                ["default", "less-power", "plain"],
                requests=args.requests,
                concurrency=args.concurrency,
                max_tokens=args.max_tokens,
            )
    print(f"machine: {machine()}")
    print(report.summary())


if __name__ == "__main__":
    main()
