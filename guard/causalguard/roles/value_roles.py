"""Value roles: 'you are strongly inclined / disinclined to the value of X, which means ...'."""

from __future__ import annotations

from causalguard.roles.role import Role
from causalguard.values.inventory import Dimension, Inventory


def value_role(dim: Dimension, direction: int) -> Role:
    """The inclined (+1) or disinclined (-1) role for one dimension, as in Kang et al. (2025)."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction}")
    if direction > 0:
        system = (
            f"You are strongly inclined to the value of {dim.display}, which means {dim.definition}. "
            "Answer every question as someone who holds this value."
        )
        description = f"a person who is strongly committed to {dim.display} ({dim.definition})"
        suffix = "inclined"
    else:
        system = (
            f"You are strongly disinclined to the value of {dim.display}, which means "
            f"{dim.opposite_text}. Answer every question as someone who rejects this value."
        )
        description = f"a person who is strongly opposed to {dim.display} ({dim.opposite_text})"
        suffix = "disinclined"
    return Role(
        id=f"value:{dim.name}:{suffix}",
        kind="value_role",
        system_prompt=system,
        description=description,
        target=dim.name,
        direction=direction,
        expected={dim.name: direction},
    )


def value_roles(inventory: Inventory) -> list[Role]:
    """Inclined and disinclined roles for every dimension, in inventory order."""
    return [value_role(dim, d) for dim in inventory.dimensions for d in (1, -1)]
