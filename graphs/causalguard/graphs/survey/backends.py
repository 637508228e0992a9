"""Where a survey's conditions are scored: in this process (``local``) or on a Ray cluster (``ray``).

A backend takes the conditions still to score and hands each finished one to ``on_done`` on the
driver, which appends it to the survey's checkpoint store. Conditions never depend on each other
(every scoring method is deterministic per condition), so the order they finish in does not change
the results: ``scores.csv`` is written in the conditions' own order. A backend returns per-worker
throughput for the run record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from causalguard.graphs.survey.conditions import Condition
from causalguard.graphs.survey.settings import SurveySettings
from causalguard.models.loaded import LoadedModel
from causalguard.scoring.base import ItemAnswer
from causalguard.scoring.registry import make_method
from causalguard.values.inventory import Dimension, Item

SurveyItems = Sequence[tuple[Dimension, Item]]
OnDone = Callable[[Condition, list[ItemAnswer]], None]


class SurveyBackend(Protocol):
    @property
    def name(self) -> str:
        """``local`` or ``ray``: recorded in the run record."""
        ...

    def run(
        self,
        lm: LoadedModel,
        settings: SurveySettings,
        conditions: Sequence[Condition],
        items: SurveyItems,
        on_done: OnDone,
    ) -> dict[str, dict[str, Any]]:
        """Score every condition, calling ``on_done`` on the driver as each finishes; per-worker throughput."""
        ...


def make_scorer(settings: SurveySettings) -> Any:
    """The scoring method a survey's settings name (the same on every backend)."""
    return make_method(
        settings.method,
        batch_size=settings.batch_size,
        reuse_prefix=settings.reuse_prefix,
        max_new_tokens=settings.max_new_tokens,
    )


def throughput(conditions: int, items: int, seconds: float) -> dict[str, Any]:
    return {
        "conditions": conditions,
        "seconds": round(seconds, 2),
        "items_per_second": round(conditions * items / seconds, 2) if conditions and seconds > 0 else None,
    }


@dataclass(frozen=True)
class LocalBackend:
    """Score the conditions one after another with the driver's model."""

    name: str = "local"

    def run(
        self,
        lm: LoadedModel,
        settings: SurveySettings,
        conditions: Sequence[Condition],
        items: SurveyItems,
        on_done: OnDone,
    ) -> dict[str, dict[str, Any]]:
        method = make_scorer(settings)
        started = time.perf_counter()
        for condition in conditions:
            on_done(condition, method.score(lm, condition.role, condition.steering, items))
        return {"local": throughput(len(conditions), len(items), time.perf_counter() - started)}
