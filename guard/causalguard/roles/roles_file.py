"""Operator-supplied roles: a YAML file (``roles: [...]``) or JSONL (one role object per line)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from causalguard.errors import ConfigError, Problem
from causalguard.jsonl_files import read_jsonl
from causalguard.roles.role import Role
from causalguard.values.inventory import Inventory, unknown_name_message
from causalguard.yaml_files import line_of, validate_yaml_file_with_node

Direction = Literal["up", "down"]
# Ids the survey gives its own conditions: an operator role may not take one.
RESERVED_ROLE_IDS = ("baseline",)
MAX_ROLE_CHARS = 4000  # a persona is a paragraph; a longer text crowds the model's context
RESERVED_ROLE_PREFIXES = ("persona:", "value:", "steer:", "sae:", "role:")


class RoleSpec(BaseModel):
    """One role in a roles file."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$", description="Unique id, e.g. 'monk'.")
    kind: Literal["persona", "anchor", "custom"] = Field(default="custom")
    system_prompt: str | None = Field(
        default=None,
        min_length=3,
        max_length=MAX_ROLE_CHARS,
        description="Second-person text for the chat system prompt; omit to derive one.",
    )
    description: str = Field(
        min_length=3,
        max_length=MAX_ROLE_CHARS,
        description="Third-person noun phrase: 'a retired judge who ...' (used by completion framing).",
    )
    expected: dict[str, Direction] = Field(
        default_factory=dict, description="Expected value directions for validity checks: {tradition: up}."
    )

    @field_validator("id")
    @classmethod
    def _not_built_in(cls, value: str) -> str:
        if value in RESERVED_ROLE_IDS or value.startswith(RESERVED_ROLE_PREFIXES):
            raise ValueError(
                f"'{value}' is taken by the survey's built-in conditions ('baseline', "
                f"{', '.join(repr(p + '...') for p in RESERVED_ROLE_PREFIXES)}); fix: choose another id"
            )
        return value

    def to_role(self) -> Role:
        system = self.system_prompt or f"You are {self.description.rstrip(',')}. Answer every question as them."
        expected = {name: 1 if d == "up" else -1 for name, d in self.expected.items()}
        return Role(id=self.id, kind=self.kind, system_prompt=system, description=self.description, expected=expected)


class RolesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roles: list[RoleSpec] = Field(min_length=1)


ANCHOR_PREFIX = "anchor:"  # the shipped known-group anchors' ids; an operator's role may not take one


def load_roles_file(path: Path, inventory: Inventory | None = None, *, shipped_anchors: bool = False) -> list[Role]:
    """Load roles from YAML or JSONL; ids must be unique, ``expected`` must name known values, and only the
    shipped anchors file (``shipped_anchors``) may use ids starting with ``anchor:``."""
    if path.suffix.lower() == ".jsonl":
        specs_with_lines = _read_jsonl(path)
    else:
        parsed, node = validate_yaml_file_with_node(RolesFile, path)
        specs_with_lines = [(spec, line_of(node, ["roles", index, "id"])) for index, spec in enumerate(parsed.roles)]
    problems: list[Problem] = []
    seen: dict[str, int | None] = {}
    for index, (spec, line) in enumerate(specs_with_lines):
        if spec.id in seen:
            problems.append(
                Problem(
                    str(path),
                    line,
                    f"roles[{index}].id",
                    f"duplicate id '{spec.id}' (first on line {seen[spec.id]})",
                    hint="give every role its own id",
                )
            )
        seen.setdefault(spec.id, line)
        if spec.id.startswith(ANCHOR_PREFIX) and not shipped_anchors:
            problems.append(
                Problem(
                    str(path),
                    line,
                    f"roles[{index}].id",
                    f"'{spec.id}' is taken by the shipped anchor roles ('{ANCHOR_PREFIX}...'), which "
                    "every survey also runs",
                    hint="choose an id without the 'anchor:' prefix",
                )
            )
        if inventory is not None:
            for name in spec.expected:
                if name not in inventory.names:
                    problems.append(
                        Problem(
                            str(path),
                            line,
                            f"roles[{index}].expected.{name}",
                            unknown_name_message(name, inventory.names, what="value"),
                        )
                    )
    if problems:
        raise ConfigError(problems)
    return [spec.to_role() for spec, _ in specs_with_lines]


def _read_jsonl(path: Path) -> list[tuple[RoleSpec, int | None]]:
    return [(spec, line) for spec, line in read_jsonl(path, RoleSpec, what="roles")]


def load_anchor_roles(inventory: Inventory) -> list[Role]:
    """The shipped known-group anchors, keeping only expectations on dimensions the inventory has."""
    path = Path(str(resources.files("causalguard").joinpath("data", "roles", "anchors.yaml")))
    roles = load_roles_file(path, shipped_anchors=True)
    kept = []
    for role in roles:
        expected = {k: v for k, v in role.expected.items() if k in inventory.names}
        if expected:
            kept.append(
                Role(
                    id=role.id,
                    kind="anchor",
                    system_prompt=role.system_prompt,
                    description=role.description,
                    expected=expected,
                )
            )
    return kept
