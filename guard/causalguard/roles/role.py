"""A role: who the model is asked to be, in the two framings the scoring methods use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

RoleKind = Literal["baseline", "persona", "value_role", "anchor", "custom"]


@dataclass(frozen=True)
class Role:
    """A role in both framings.

    ``system_prompt`` is the second-person text used as a chat system prompt ("FYI, here is your
    trait: ...", "You are strongly inclined to ..."); ``None`` means the model's default system prompt.
    ``description`` is a third-person noun phrase used by completion framing
    (``Here is how {description} describes themselves:``).
    ``expected`` maps value names to the expected direction (+1/-1) for known-group validity checks.
    """

    id: str
    kind: RoleKind
    system_prompt: str | None
    description: str
    target: str | None = None
    direction: int = 0
    expected: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "expected", MappingProxyType(dict(self.expected)))


BASELINE = Role(id="baseline", kind="baseline", system_prompt=None, description="a person")
