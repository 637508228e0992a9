"""The scoring-method interface and the answer record every method returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from causalguard.models.loaded import LoadedModel
from causalguard.roles.role import Role
from causalguard.steering import SteeringCondition
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


METHOD_NAMES = ("yesno", "statement", "generate")


def make_method(name: str, *, batch_size: int = 32, reuse_prefix: bool = True,
                max_new_tokens: int = 100) -> ScoringMethod:
    """Build a scoring method by name: ``yesno``, ``statement`` or ``generate``."""
    from causalguard.scoring.generate import GenerateParse
    from causalguard.scoring.statement import StatementContrast
    from causalguard.scoring.yesno import YesNoLogOdds

    if name == "yesno":
        return YesNoLogOdds(batch_size=batch_size, reuse_prefix=reuse_prefix)
    if name == "statement":
        return StatementContrast(batch_size=batch_size, reuse_prefix=reuse_prefix)
    if name == "generate":
        return GenerateParse(batch_size=batch_size, max_new_tokens=max_new_tokens)
    raise ValueError(f"unknown scoring method {name!r}; choose one of {', '.join(METHOD_NAMES)}")
