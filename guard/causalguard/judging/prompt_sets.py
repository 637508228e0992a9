"""Prompt sets: the user messages whose replies are judged (``prompts.jsonl``).

One JSON object per line:

    {"id": "be01", "text": "My friend is going through a divorce. How can I support her?",
     "values": ["benevolence"], "split": "dev"}

- ``id``: unique, letters, digits and ``_.:-`` (at most 64 characters).
- ``text``: the user's message (1 to 4,000 characters).
- ``values``: the value dimensions the message touches (may be empty); checked against the inventory.
- ``split``: ``dev`` (used to fit, calibrate and choose anything) or ``test`` (only ever reported).
  When absent, the split is fixed by a hash of the id, so an operator's own traffic gets a stable
  split without editing the file.

The shipped set (``causalguard/data/behaviour/prompts.jsonl``) has everyday messages written for
causalguard, balanced over the default values by first tag, with a fixed dev/test split. Test splits were
written afresh whenever an earlier one had informed a decision (``docs/behaviour.md`` lists them and what
read each); used test prompts became dev later, listed after the original dev prompts so that every balanced
dev slice earlier measurements read is unchanged.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from causalguard.errors import ConfigError, Problem
from causalguard.jsonl_files import read_jsonl

Split = Literal["dev", "test"]
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


def default_prompts_path() -> Path:
    return Path(str(resources.files("causalguard") / "data" / "behaviour" / "prompts.jsonl"))


def hashed_split(item_id: str) -> Split:
    """A stable dev/test split from the id alone (half each in expectation)."""
    return "dev" if hashlib.sha256(item_id.encode()).digest()[0] % 2 == 0 else "test"


class PromptRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=ID_PATTERN)
    text: str = Field(min_length=1, max_length=4000, pattern=r"\S")  # not only whitespace
    values: list[str] = Field(default_factory=list)
    split: Split | None = None


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    values: tuple[str, ...]
    split: Split

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.text}]


@dataclass(frozen=True)
class PromptSet:
    path: Path
    prompts: tuple[Prompt, ...]

    def __iter__(self) -> Iterator[Prompt]:
        return iter(self.prompts)

    def __len__(self) -> int:
        return len(self.prompts)

    def split(self, split: Split) -> PromptSet:
        return PromptSet(self.path, tuple(p for p in self.prompts if p.split == split))

    def balanced(self, n: int) -> PromptSet:
        """At most ``n`` prompts, taken round-robin over the prompts' first value tag (file order within
        each tag), so a small sample still covers every value."""
        groups: dict[str, list[Prompt]] = {}
        for p in self.prompts:
            groups.setdefault(p.values[0] if p.values else "", []).append(p)
        chosen: list[Prompt] = []
        depth = 0
        while len(chosen) < min(n, len(self.prompts)):
            for group in groups.values():
                if depth < len(group) and len(chosen) < n:
                    chosen.append(group[depth])
            depth += 1
        return PromptSet(self.path, tuple(chosen))

    def balanced_slice(self, offset: int, n: int) -> PromptSet:
        """Prompts ``offset`` to ``offset + n`` of the balanced order: a slice earlier runs did not read."""
        chosen = self.balanced(offset + n).prompts[offset:]
        if len(chosen) < n:
            raise ConfigError.single(
                "--prompt-offset",
                f"{self.path} has {len(self.prompts)} prompts here: {n} from offset {offset} do not fit",
                hint="lower --prompts or --prompt-offset",
            )
        return PromptSet(self.path, chosen)

    def counts(self) -> Counter[str]:
        return Counter(v for p in self.prompts for v in p.values)


def load_prompts(path: Path | None = None, *, dimensions: Sequence[str] | None = None) -> PromptSet:
    """Read and validate a prompt set (the shipped one by default); ``dimensions`` checks the value tags."""
    path = path or default_prompts_path()
    records = read_jsonl(path, PromptRecord, what="prompts")
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    known = set(dimensions) if dimensions is not None else None
    prompts = []
    for record, line in records:
        if record.id in seen:
            problems.append(
                Problem(
                    str(path),
                    line,
                    "id",
                    f"duplicate id {record.id!r} (first on line {seen[record.id]})",
                    hint="give every prompt its own id",
                )
            )
            continue
        seen[record.id] = line
        for value in record.values:
            if known is not None and value not in known:
                problems.append(
                    Problem(
                        str(path),
                        line,
                        "values",
                        f"unknown value {value!r}",
                        hint=f"use one of: {', '.join(sorted(known))}",
                    )
                )
        prompts.append(Prompt(record.id, record.text, tuple(record.values), record.split or hashed_split(record.id)))
    if problems:
        raise ConfigError(problems)
    return PromptSet(path, tuple(prompts))
