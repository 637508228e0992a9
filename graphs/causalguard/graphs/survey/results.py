"""A survey's results on disk and in memory: answers, the score matrix, conditions and metadata."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from causalguard.errors import ConfigError
from causalguard.graphs.survey.store import AnswerStore
from causalguard.run_records import read_run_record
from causalguard.scoring.base import ItemAnswer

RUN_FILE = "run.json"
ANSWERS_FILE = "answers.csv"
CONDITIONS_FILE = "conditions.csv"
SCORES_FILE = "scores.csv"
QUALITY_JSON = "quality.json"
QUALITY_MD = "quality.md"
AGREEMENT_FILE = "agreement.csv"
ID_COLUMNS = ["condition", "role_kind", "steering"]


@dataclass(frozen=True)
class ConditionInfo:
    id: str
    role: str
    role_kind: str
    steering: str
    target: str | None
    direction: int
    expected: dict[str, int]


@dataclass
class SurveyResult:
    """Answers of every condition to every item, and the condition x dimension score matrix."""

    out_dir: Path
    dimensions: list[str]
    conditions: list[ConditionInfo]
    answers: dict[str, list[ItemAnswer]]
    metadata: dict[str, Any]

    @property
    def condition_ids(self) -> list[str]:
        return [c.id for c in self.conditions]

    def matrix(self) -> np.ndarray:
        """Scores, shape (conditions, dimensions): the mean item score per dimension."""
        out = np.zeros((len(self.conditions), len(self.dimensions)))
        col = {d: j for j, d in enumerate(self.dimensions)}
        for i, cond in enumerate(self.conditions):
            sums = np.zeros(len(self.dimensions))
            counts = np.zeros(len(self.dimensions))
            for a in self.answers[cond.id]:
                sums[col[a.dimension]] += a.score
                counts[col[a.dimension]] += 1
            out[i] = sums / np.maximum(counts, 1)
        return out

    def item_matrix(self, dimension: str) -> tuple[list[str], np.ndarray]:
        """Item ids of one dimension and their scores, shape (conditions, items)."""
        first = self.answers[self.conditions[0].id]
        item_ids = [a.item_id for a in first if a.dimension == dimension]
        index = {item: k for k, item in enumerate(item_ids)}
        out = np.zeros((len(self.conditions), len(item_ids)))
        for i, cond in enumerate(self.conditions):
            for a in self.answers[cond.id]:
                if a.dimension == dimension:
                    out[i, index[a.item_id]] = a.score
        return item_ids, out

    def write_scores(self) -> Path:
        path = self.out_dir / SCORES_FILE
        matrix = self.matrix()
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(ID_COLUMNS + self.dimensions)
            for cond, row in zip(self.conditions, matrix, strict=True):
                writer.writerow([cond.id, cond.role_kind, cond.steering, *(repr(float(v)) for v in row)])
        return path


def write_conditions(path: Path, conditions: list[ConditionInfo]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["condition", "role", "role_kind", "steering", "target", "direction", "expected"])
        for c in conditions:
            writer.writerow(
                [
                    c.id,
                    c.role,
                    c.role_kind,
                    c.steering,
                    c.target or "",
                    c.direction,
                    json.dumps(c.expected, sort_keys=True),
                ]
            )


def read_conditions(path: Path) -> list[ConditionInfo]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            ConditionInfo(
                id=r["condition"],
                role=r["role"],
                role_kind=r["role_kind"],
                steering=r["steering"],
                target=r["target"] or None,
                direction=int(r["direction"]),
                expected={k: int(v) for k, v in json.loads(r["expected"]).items()},
            )
            for r in csv.DictReader(handle)
        ]


def load_survey(out_dir: Path) -> SurveyResult:
    """Load a completed survey output folder."""
    run_file = out_dir / RUN_FILE
    if not run_file.exists():
        raise ConfigError.single(
            str(out_dir), f"not a survey output folder (no {RUN_FILE})", hint="run 'causalguard survey --out DIR' first"
        )
    metadata = read_run_record(run_file)
    if metadata.get("status") != "complete":
        raise ConfigError.single(
            str(run_file),
            "the survey has not finished",
            hint="rerun the same 'causalguard survey' command to resume it",
        )
    conditions = read_conditions(out_dir / CONDITIONS_FILE)
    answers = AnswerStore(out_dir / ANSWERS_FILE).load(expected_items=metadata["inventory"]["items"])
    return SurveyResult(
        out_dir=out_dir,
        dimensions=list(metadata["inventory"]["dimensions"]),
        conditions=conditions,
        answers=answers,
        metadata=metadata,
    )
