"""The inventory model: value dimensions, each with first-person items keyed +1 (pro) or -1 (reversed)."""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from causalguard.errors import CausalguardError

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
# Column names the score matrices use for ids (ours and the paper's): a value may not take one.
RESERVED_NAMES = ("condition", "role_kind", "steering", "steer_dim", "player_name")
# An item is one questionnaire sentence; a longer text is a mistake (and would crowd the model's context).
MAX_ITEM_CHARS = 1000


class Item(BaseModel):
    """One questionnaire item, asked either as a statement or as a yes/no question."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(
        min_length=1, max_length=200, pattern=r"^\S+$", description="Unique item id within the inventory, e.g. 'ben01'."
    )
    statement: str = Field(
        min_length=3, max_length=MAX_ITEM_CHARS, description="First-person statement, e.g. 'I help my friends.'"
    )
    question: str = Field(
        min_length=3, max_length=MAX_ITEM_CHARS, description="The same item as a yes/no question to 'you'."
    )
    polarity: Literal[1, -1] = Field(
        description="+1 if agreeing expresses the value, -1 if agreeing expresses its opposite."
    )

    @field_validator("polarity", mode="before")
    @classmethod
    def _not_a_boolean(cls, polarity: object) -> object:
        if isinstance(polarity, bool):  # YAML's true/false would otherwise pass as 1/0
            raise ValueError(f"polarity must be the number 1 or -1, got {polarity!r}; fix: write 1 or -1")
        return polarity


class Dimension(BaseModel):
    """A value dimension with a definition used in prompts and its items."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        max_length=64, pattern=NAME_PATTERN, description="Identifier: lowercase, digits, underscores (at most 64)."
    )
    label: str | None = Field(default=None, description="Display name; defaults to the name.")
    definition: str = Field(min_length=3, description="What holding the value means (a noun phrase).")
    opposite: str | None = Field(default=None, description="What rejecting the value means (optional).")
    items: list[Item] = Field(min_length=2, description="At least two items, ideally balanced in polarity.")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in RESERVED_NAMES:
            raise ValueError(
                f"'{name}' is a column name of the score matrix; fix: rename the value (e.g. '{name}_value')"
            )
        return name

    @property
    def display(self) -> str:
        return self.label or self.name.replace("_", " ")

    @property
    def opposite_text(self) -> str:
        return self.opposite or f"rejecting {self.definition}"


class UnknownDimensionError(CausalguardError, KeyError):
    """A dimension name that the inventory does not define; the message suggests close names."""

    def __str__(self) -> str:
        return str(self.args[0])


class Inventory(BaseModel):
    """A set of value dimensions. Dimension names and item ids are unique."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"\S",
        description="Inventory name, e.g. 'schwartz-basic-10' (no '/', '\\' or control characters).",
    )
    version: str = Field(default="1", description="Version of the inventory's text.")
    description: str = Field(default="", description="Where the items come from.")
    dimensions: list[Dimension] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _a_name_not_a_path(cls, name: str) -> str:
        """Recorded in bundles and read back as a shipped name or a file path: no separators, no control
        characters, not '.' or '..'."""
        if (
            name.strip() in (".", "..")
            or any(c in name for c in "/\\")
            or any(ord(c) < 32 or ord(c) == 127 for c in name)
        ):
            raise ValueError(f"{name[:40]!r} is not a name: no '/', '\\', control characters, '.' or '..'")
        return name

    @field_validator("dimensions")
    @classmethod
    def _unique_names(cls, dimensions: list[Dimension]) -> list[Dimension]:
        seen: set[str] = set()
        item_ids: set[str] = set()
        statements: dict[str, str] = {}
        for dim in dimensions:
            if dim.name in seen:
                raise ValueError(f"dimension '{dim.name}' is defined twice")
            seen.add(dim.name)
            for item in dim.items:
                if item.id in item_ids:
                    raise ValueError(f"item id '{item.id}' is used twice (dimension '{dim.name}')")
                item_ids.add(item.id)
                key = " ".join(item.statement.lower().split())
                if key in statements:
                    raise ValueError(
                        f"item '{item.id}' (dimension '{dim.name}') repeats the statement of item "
                        f"'{statements[key]}'; fix: every item needs its own statement"
                    )
                statements[key] = item.id
        return dimensions

    def unbalanced_dimensions(self) -> list[str]:
        """Dimensions whose items are all keyed one way: acquiescence (agreeing with everything) then reads
        as the value, and reliability is inflated (see docs/survey.md)."""
        return [d.name for d in self.dimensions if len({item.polarity for item in d.items}) == 1]

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def dimension(self, name: str) -> Dimension:
        """The dimension called ``name``; unknown names raise with a 'did you mean' suggestion."""
        for dim in self.dimensions:
            if dim.name == name:
                return dim
        raise UnknownDimensionError(unknown_name_message(name, self.names, what="value dimension"))

    def select(self, names: Sequence[str]) -> Inventory:
        """A copy restricted to ``names``, in the order given."""
        return self.model_copy(update={"dimensions": [self.dimension(n) for n in names]})

    def items(self) -> Iterator[tuple[Dimension, Item]]:
        for dim in self.dimensions:
            for item in dim.items:
                yield dim, item

    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON of the inventory: a run's results belong to exactly this text."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def unknown_name_message(name: str, known: Sequence[str], *, what: str) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(known)}"
    return f"unknown {what} '{name}'; {hint}"
