"""Score a survey's conditions on a Ray cluster: a pool of actors, each loading the model once.

    backend = RayBackend(RayOptions(actors=4, num_gpus=1, address="ray://head:10001"))
    run_survey(lm, inventory, conditions, settings, out_dir, backend=backend)

Each actor (``SurveyWorker``) loads the model by name, checks that its weights are the driver's
(fingerprint), and scores whole conditions with the scoring method the local backend uses. As each
condition finishes the driver appends it to the survey's checkpoint store, so a run that dies on the
driver resumes from the store like a local one; lost actors are handled by the pool
(``graphs/ray_pool.py``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from causalguard.graphs.ray_pool import ActorPool, RayOptions, dtype_name, load_checked_model, ray_session, worker_name
from causalguard.graphs.survey.backends import OnDone, SurveyItems, make_scorer, throughput
from causalguard.graphs.survey.conditions import Condition
from causalguard.graphs.survey.settings import SurveySettings
from causalguard.models.loaded import LoadedModel
from causalguard.scoring.base import ItemAnswer


class SurveyWorker:
    """One actor: the model loaded once, scoring whole conditions."""

    def __init__(self, model: str, dtype: str, fingerprint: str, settings: SurveySettings, threads: int) -> None:
        self.lm = load_checked_model(model, dtype, fingerprint, threads)
        self.method = make_scorer(settings)

    def score(self, index: int, condition: Condition, items: SurveyItems) -> tuple[int, list[ItemAnswer], float, str]:
        started = time.perf_counter()
        answers = self.method.score(self.lm, condition.role, condition.steering, items)
        return index, answers, time.perf_counter() - started, worker_name()


@dataclass
class RayBackend:
    """Score conditions on a Ray actor pool (see the module docstring)."""

    options: RayOptions = field(default_factory=RayOptions)
    name: str = "ray"
    pool: ActorPool | None = None  # while a run is on (tests kill one of its actors)

    @property
    def actors(self) -> list[Any]:
        return self.pool.actors if self.pool is not None else []

    def run(
        self,
        lm: LoadedModel,
        settings: SurveySettings,
        conditions: Sequence[Condition],
        items: SurveyItems,
        on_done: OnDone,
    ) -> dict[str, dict[str, Any]]:
        if not conditions:
            return {}
        per_worker: dict[str, list[float]] = {}
        with ray_session(self.options) as ray:
            shared_items = ray.put(list(items))
            self.pool = ActorPool(
                ray,
                SurveyWorker,
                (lm.name, dtype_name(lm), lm.fingerprint, settings, self.options.torch_threads()),
                self.options,
            )

            def finished(result: tuple[int, list[ItemAnswer], float, str]) -> None:
                index, answers, seconds, worker = result
                on_done(conditions[index], answers)
                counted = per_worker.setdefault(worker, [0, 0.0])
                counted[0] += 1
                counted[1] += seconds

            try:
                self.pool.run(
                    conditions,
                    lambda actor, index, condition: actor.score.remote(index, condition, shared_items),
                    finished,
                )
            finally:
                self.pool = None
        return {worker: throughput(int(n), len(items), seconds) for worker, (n, seconds) in per_worker.items()}
