"""Run ``causalguard serve`` as a child process (integration tests, load benchmarks, smoke checks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    config: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 180.0, *, loaded_only: bool = False) -> None:
        """Wait until ``/readyz`` answers 200 (or, ``loaded_only``, until the guard is loaded even while
        ``/readyz`` says 503, e.g. with its upstream down)."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                answer = httpx.get(f"{self.url}/readyz", timeout=2)
                if answer.status_code == 200 or (loaded_only and "model" in answer.json()):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.25)
        raise TimeoutError(f"server not ready after {timeout} s:\n{self.log()[-3000:]}")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


@contextmanager
def serve_in_process(
    config: Path,
    log_path: Path,
    *,
    port: int | None = None,
    env: dict[str, str] | None = None,
    log_level: str = "warning",
    extra_args: tuple[str, ...] = (),
    loaded_only: bool = False,
) -> Iterator[ServerProcess]:
    """Start the server on loopback, wait until ready (``loaded_only``: until the guard is loaded, even
    if not ready), and always stop it (SIGTERM, then SIGKILL)."""
    port = port or free_port()
    command = [
        sys.executable,
        "-c",
        "from causalguard.cli import main; main()",
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        "--log-level",
        log_level,
        *extra_args,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    server = ServerProcess(process, port, log_path, config)
    try:
        server.wait_ready(loaded_only=loaded_only)
        yield server
    finally:
        server.stop()
