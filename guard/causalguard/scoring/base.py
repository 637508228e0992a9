"""The scoring-method interface and the answer record every method returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from causalguard.models.loaded import LoadedModel
from causalguard.roles.role import Role
from causalguard.steering_conditions import SteeringCondition
from causalguard.values.inventory import Dimension, Item


@dataclass(frozen=True)
class ItemAnswer:
    """One item answered under one condition.

    ``raw`` is the method's endorsement of the item's text (log-odds, mean log-prob, or +1/-1/0);
    ``score`` is ``raw`` turned toward the value (multiplied by the item's polarity, and for yes/no
    calibrated and squashed to [-1, 1]). A dimension's score is the mean of its items' ``score``.
    """

    item_id: str
    dimension: str
    polarity: int
    raw: float
    score: float
    yes_no_mass: float | None = None
    text: str | None = None


class ScoringMethod(Protocol):
    name: ClassVar[str]
    scale: ClassVar[str]
    version: ClassVar[int]  # bumped whenever the method's numbers change; part of a survey's identity

    def score(
        self,
        lm: LoadedModel,
        role: Role,
        steering: SteeringCondition,
        items: Sequence[tuple[Dimension, Item]],
    ) -> list[ItemAnswer]:
        """Answer ``items`` under ``role`` and ``steering``; one answer per item, in order."""
        ...
