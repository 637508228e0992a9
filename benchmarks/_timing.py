"""Shared timing helpers for the benchmarks: interleaved arms, medians, machine description."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable


def machine() -> str:
    import torch

    return f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def interleaved(arms: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Run every arm once per round, round after round, so drift affects all arms alike."""
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(repeats):
        for name, arm in arms.items():
            start = time.perf_counter()
            arm()
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)
