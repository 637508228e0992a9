"""A guard plan applied: its SAE levers as interventions, and the whole plan as a survey condition (audits)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from causalguard.adapters.hf.hooks import SteeringPlan, steer
from causalguard.adapters.hf.interventions import FeatureEdit, Intervention, SaeIntervention, Scope
from causalguard.adapters.hf.sae import LoadedSae
from causalguard.adapters.hf.value_adapters import ValueAdapter
from causalguard.adapters.hf.vectors import VectorSet
from causalguard.bundle.catalog import VECTOR_KINDS, Catalog
from causalguard.models.loaded import LoadedModel
from causalguard.planning.planner import Plan
from causalguard.runtime.conversation import Message
from causalguard.runtime.generation import GenerationRow, chat_prompt_ids
from causalguard.runtime.guidance import Guidance


def plan_interventions(
    plan: Plan,
    sae: LoadedSae | None,
    catalog: Catalog,
    vectors: VectorSet | None = None,
    adapters: Mapping[str, ValueAdapter] | None = None,
) -> tuple[Intervention, ...]:
    """The plan's SAE levers as one additive intervention over all tokens, its vector and pair levers' vectors
    on their tokens (generated, or all) and its adapter levers at their scale (each as it was measured)."""
    edits = []
    steering: list[Intervention] = []
    for lever in plan.levers:
        if lever.kind == "adapter":
            if not adapters or lever.adapter is None or lever.adapter not in adapters:
                raise ValueError(
                    f"lever {lever.id} needs the bundle's value adapter {lever.adapter!r}, which is not loaded"
                )
            steering.append(adapters[lever.adapter].intervention(lever.strength))
        if lever.kind in VECTOR_KINDS:
            if vectors is None or lever.target is None:
                raise ValueError(f"lever {lever.id} needs the bundle's steering vectors, which are not loaded")
            steering.append(vectors.intervention(lever.vector_key, lever.strength, Scope(lever.vector_tokens)))
        if lever.kind != "sae":
            continue
        if sae is None or catalog.sae is None or lever.feature is None:
            raise ValueError(f"lever {lever.id} needs the bundle's SAE, which is not loaded")
        edits.append(
            FeatureEdit(
                lever.feature, "add", sae.additive_value(lever.feature, lever.strength, catalog.sae.residual_norm)
            )
        )
    sae_part: tuple[Intervention, ...] = (SaeIntervention(sae, tuple(edits)),) if edits and sae is not None else ()
    return sae_part + tuple(steering)


def plan_row(
    lm: LoadedModel,
    messages: Sequence[Message],
    system_prompt: str | None,
    plan: Plan,
    interventions: tuple[Intervention, ...],
    seed: int | None = None,
) -> GenerationRow:
    """A guarded conversation as a generation row: the plan's role and guided wordings in the system
    message, its interventions, and for a guided lever the twin's prompt under the negative wording."""
    prompt = chat_prompt_ids(lm, messages, system_prompt, plan.role_instructions())
    negative = plan.negative_instructions()
    guidance = None
    if negative is not None and plan.guided_lever is not None and plan.guided_lever.guidance_scale is not None:
        guidance = Guidance(
            plan.guided_lever.guidance_scale, tuple(chat_prompt_ids(lm, messages, system_prompt, negative))
        )
    return GenerationRow(prompt, interventions, seed, guidance)


@dataclass(frozen=True)
class ProfileCondition:
    """A plan as a ``SteeringCondition``: role instructions as the prompt note, SAE edits via the guard's
    already-installed dispatcher hooks (so it only sets the context's plan)."""

    id: str
    note: str | None
    interventions: tuple[Intervention, ...]

    def prompt_note(self) -> str | None:
        return self.note

    def applied(self, model: Any) -> AbstractContextManager[object]:
        return self._applied()

    @contextmanager
    def _applied(self) -> Iterator[object]:
        with steer(SteeringPlan.broadcast(self.interventions) if self.interventions else None) as plan:
            yield plan
