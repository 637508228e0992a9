"""What a lever is: a role prompt or an SAE feature edit, with a direction and a strength."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from causalguard.values.inventory import Dimension

LeverKind = Literal["role", "sae"]


def role_instruction(dim: Dimension, direction: int) -> str:
    """The role lever's text: added to the system prompt when serving, and before the survey context."""
    if direction > 0:
        return (f"Answer as someone who is strongly inclined to the value of {dim.display}, "
                f"which means {dim.definition}.")
    return (f"Answer as someone who is strongly disinclined to the value of {dim.display}, "
            f"which means {dim.opposite_text}.")


@dataclass(frozen=True)
class LeverSpec:
    """One lever at one strength.

    ``strength`` of an SAE lever is signed, in units of the layer's median residual-stream norm
    (``add`` edit value = strength * norm / |W_dec[feature]|); a role lever's strength is 1.
    """

    id: str
    kind: LeverKind
    target: str | None
    direction: int
    strength: float
    feature: int | None = None
    text: str | None = None

    @classmethod
    def role(cls, dim: Dimension, direction: int) -> LeverSpec:
        sign = "+" if direction > 0 else "-"
        return cls(id=f"role:{dim.name}:{sign}", kind="role", target=dim.name, direction=direction, strength=1.0,
                   text=role_instruction(dim, direction))

    @classmethod
    def sae(cls, feature: int, strength: float, target: str | None) -> LeverSpec:
        return cls(id=f"sae:f{feature}:{strength:+g}", kind="sae", target=target,
                   direction=1 if strength > 0 else -1, strength=strength, feature=feature)
