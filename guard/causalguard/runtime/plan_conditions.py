"""A guard plan applied: its SAE levers as interventions, and the whole plan as a survey condition (audits)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from causalguard.adapters.hf.hooks import SteeringPlan, steer
from causalguard.adapters.hf.interventions import FeatureEdit, SaeIntervention
from causalguard.adapters.hf.sae import LoadedSae
from causalguard.graphs.levers.catalog import Catalog
from causalguard.planning.planner import Plan


def plan_interventions(plan: Plan, sae: LoadedSae | None, catalog: Catalog) -> tuple[SaeIntervention, ...]:
    """The plan's SAE levers as one additive intervention over all tokens (as they were measured)."""
    edits = []
    for lever in plan.levers:
        if lever.kind != "sae":
            continue
        if sae is None or catalog.sae is None or lever.feature is None:
            raise ValueError(f"lever {lever.id} needs the bundle's SAE, which is not loaded")
        edits.append(FeatureEdit(lever.feature, "add", sae.additive_value(
            lever.feature, lever.strength, catalog.sae.residual_norm)))
    return (SaeIntervention(sae, tuple(edits)),) if edits and sae is not None else ()


@dataclass(frozen=True)
class ProfileCondition:
    """A plan as a ``SteeringCondition``: role instructions as the prompt note, SAE edits via the guard's
    already-installed dispatcher hooks (so it only sets the context's plan)."""

    id: str
    note: str | None
    interventions: tuple[SaeIntervention, ...]

    def prompt_note(self) -> str | None:
        return self.note

    def applied(self, model: Any) -> AbstractContextManager[object]:
        return self._applied()

    @contextmanager
    def _applied(self) -> Iterator[object]:
        with steer(SteeringPlan.broadcast(self.interventions) if self.interventions else None) as plan:
            yield plan
