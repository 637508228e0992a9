"""Conditions: one role under one steering condition."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from causalguard.roles.personas import generate_personas
from causalguard.roles.role import BASELINE, Role
from causalguard.roles.roles_file import load_anchor_roles
from causalguard.roles.value_roles import value_roles
from causalguard.steering_conditions import NoSteering, SteeringCondition
from causalguard.values.inventory import Inventory


@dataclass(frozen=True)
class Condition:
    role: Role
    steering: SteeringCondition

    @property
    def id(self) -> str:
        return self.role.id if self.steering.id == "none" else f"{self.role.id}|{self.steering.id}"


def build_conditions(
    roles: Sequence[Role], steerings: Sequence[SteeringCondition] = (NoSteering(),)
) -> list[Condition]:
    """Every role under every steering condition; ids must be unique."""
    conditions = [Condition(role, steering) for steering in steerings for role in roles]
    ids = [c.id for c in conditions]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate condition ids: {', '.join(duplicates[:5])}")
    return conditions


def standard_roles(
    inventory: Inventory,
    *,
    personas: int,
    seed: int = 0,
    include_value_roles: bool = True,
    include_anchors: bool = True,
    extra: Sequence[Role] = (),
) -> list[Role]:
    """Baseline, seeded personas, value roles for every dimension, known-group anchors, extra roles."""
    roles: list[Role] = [BASELINE, *generate_personas(personas, seed=seed)]
    if include_value_roles:
        roles += value_roles(inventory)
    if include_anchors:
        roles += load_anchor_roles(inventory)
    return roles + list(extra)
