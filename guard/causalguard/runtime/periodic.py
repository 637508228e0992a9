"""A background thread that runs one round, waits, and repeats until stopped (the audits' lifecycle)."""

from __future__ import annotations

import threading
from typing import Any


class PeriodicWorker:
    """Subclasses define ``run_once`` and ``pause_seconds``; ``start`` is idempotent, ``stop`` joins.

    A round in progress should watch ``stopping`` (set by ``stop``) and end early, so that closing the
    owner never leaves a thread inside a forward pass while the interpreter shuts down."""

    thread_name = "causalguard-periodic"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> Any:
        raise NotImplementedError

    def pause_seconds(self) -> float:
        raise NotImplementedError

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    @property
    def stopping(self) -> threading.Event:
        """Set once ``stop`` was called."""
        return self._stop

    def stop(self, timeout: float = 60.0) -> None:
        """Ask the loop to end and wait (up to ``timeout``) until its round has returned."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            if self._stop.wait(self.pause_seconds()):
                return
