"""Hold the active configuration; reload validates first, then swaps one reference atomically.

Requests take a snapshot (``current()``) when they start and keep it to the end, so in-flight
requests finish on the old configuration while new ones see the new one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

StateT = TypeVar("StateT")


@dataclass(frozen=True)
class Versioned(Generic[StateT]):
    version: int
    state: StateT


class ConfigHolder(Generic[StateT]):
    def __init__(self, build: Callable[[], StateT]) -> None:
        self._build = build
        self._lock = threading.Lock()  # serialises reloads; readers never take it
        self._current = Versioned(1, build())

    def current(self) -> Versioned[StateT]:
        return self._current

    def reload(self, build: Callable[[], StateT] | None = None) -> Versioned[StateT]:
        """Build the new state (may raise: then nothing changes), then swap it in."""
        with self._lock:
            state = (build or self._build)()
            self._current = Versioned(self._current.version + 1, state)
            return self._current
