"""SAE feature steering as a survey steering condition (``causalguard.steering.SteeringCondition``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from causalguard.adapters.hf.hooks import SteeringPlan, install_steering_hooks, steer
from causalguard.adapters.hf.interventions import FeatureEdit, SaeIntervention, Scope
from causalguard.adapters.hf.sae import LoadedSae


@dataclass(frozen=True, repr=False)
class SaeSteering:
    """Edit SAE features on every forward pass while a condition is scored."""

    sae: LoadedSae
    edits: tuple[FeatureEdit, ...]
    scope: Scope = field(default_factory=Scope)
    label: str | None = None

    def __post_init__(self) -> None:
        SaeIntervention(self.sae, self.edits, self.scope)  # validate feature ids now, not mid-survey

    @property
    def id(self) -> str:
        if self.label:
            return f"sae:{self.label}"
        return "sae:" + "+".join(f"{e.mode}{e.feature}={e.value:g}" for e in self.edits)

    def __repr__(self) -> str:  # part of the survey signature: stable, no memory addresses
        edits = ",".join(f"{e.mode}:{e.feature}:{e.value!r}" for e in self.edits)
        return f"SaeSteering({self.sae.hook_name},{self.sae.d_sae},{edits},{self.scope.kind},{self.scope.text!r})"

    def prompt_note(self) -> str | None:
        return None

    def applied(self, model: Any) -> AbstractContextManager[object]:
        return self._applied(model)

    @contextmanager
    def _applied(self, model: Any) -> Iterator[object]:
        intervention = SaeIntervention(self.sae, self.edits, self.scope)
        with (
            install_steering_hooks(model, [intervention.layer]) as hooks,
            steer(SteeringPlan.broadcast([intervention])),
        ):
            yield hooks
