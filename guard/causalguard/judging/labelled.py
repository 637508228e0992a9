"""Labelled replies: texts that clearly express one value's high or low pole, or no value at all.

``labelled_replies.jsonl``, one JSON object per line:

    {"id": "be-h01", "value": "benevolence", "pole": "high", "text": "Be there for her: ...", "split": "dev"}

``pole`` is ``high``, ``low`` or ``neutral`` (then ``value`` is null). The judge is fitted on the
``dev`` half and validated on the ``test`` half only. The shipped set has 20 replies per value and
pole plus 40 neutral ones, written for causalguard as chatbot advice; each high reply has a low
reply on the same situation, so topic alone cannot separate the poles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from causalguard.errors import ConfigError, Problem
from causalguard.jsonl_files import read_jsonl
from causalguard.judging.prompt_sets import ID_PATTERN, Split, hashed_split

Pole = Literal["high", "low", "neutral"]


def default_labelled_path() -> Path:
    return Path(str(resources.files("causalguard") / "data" / "behaviour" / "labelled_replies.jsonl"))


class LabelledRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=ID_PATTERN)
    value: str | None
    pole: Pole
    text: str = Field(min_length=1, max_length=4000)
    split: Split | None = None


@dataclass(frozen=True)
class LabelledText:
    id: str
    value: str | None
    pole: Pole
    text: str
    split: Split


def load_labelled(path: Path | None = None, *, dimensions: Sequence[str] | None = None) -> list[LabelledText]:
    path = path or default_labelled_path()
    problems: list[Problem] = []
    seen: set[str] = set()
    out = []
    for record, line in read_jsonl(path, LabelledRecord, what="labelled replies"):
        if record.id in seen:
            problems.append(Problem(str(path), line, "id", f"duplicate id {record.id!r}"))
        seen.add(record.id)
        if (record.pole == "neutral") != (record.value is None):
            problems.append(Problem(str(path), line, "value", "neutral texts have value null; others name a value"))
        elif record.value is not None and dimensions is not None and record.value not in dimensions:
            problems.append(
                Problem(
                    str(path),
                    line,
                    "value",
                    f"unknown value {record.value!r}",
                    hint=f"use one of: {', '.join(dimensions)}",
                )
            )
        out.append(
            LabelledText(record.id, record.value, record.pole, record.text, record.split or hashed_split(record.id))
        )
    if problems:
        raise ConfigError(problems)
    return out
