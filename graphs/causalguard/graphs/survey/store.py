"""Append-only answer storage that makes a survey resumable.

Answers are written one whole condition at a time (a single write, flushed and fsynced), so a killed
run leaves complete conditions plus at most one partial line. On resume, rows of incomplete
conditions are dropped and those conditions are recomputed from scratch; since a condition's batches
never depend on what ran before, the resumed results equal an uninterrupted run's exactly.
Floats are written with ``repr``, which round-trips exactly.
"""

from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from pathlib import Path

from causalguard.scoring.base import ItemAnswer

COLUMNS = ["condition", "item_id", "dimension", "polarity", "raw", "score", "yes_no_mass", "text"]


def _fmt(value: float | None) -> str:
    return "" if value is None else repr(float(value))


class AnswerStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, expected_items: int) -> dict[str, list[ItemAnswer]]:
        """Complete conditions found on disk; rewrites the file without partial ones."""
        if not self.path.exists():
            return {}
        by_condition: dict[str, list[ItemAnswer]] = defaultdict(list)
        with self.path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                try:
                    answer = ItemAnswer(
                        item_id=row["item_id"], dimension=row["dimension"], polarity=int(row["polarity"]),
                        raw=float(row["raw"]), score=float(row["score"]),
                        yes_no_mass=float(row["yes_no_mass"]) if row["yes_no_mass"] else None,
                        text=row["text"] or None,
                    )
                except (KeyError, TypeError, ValueError):
                    continue  # a line cut short by a kill
                by_condition[row["condition"]].append(answer)
        complete = {c: a for c, a in by_condition.items() if len(a) == expected_items}
        if len(complete) != len(by_condition):
            self._rewrite(complete)
        return complete

    def append(self, condition: str, answers: list[ItemAnswer]) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        new_file = not self.path.exists() or self.path.stat().st_size == 0
        if new_file:
            writer.writerow(COLUMNS)
        for a in answers:
            writer.writerow([condition, a.item_id, a.dimension, a.polarity, _fmt(a.raw), _fmt(a.score),
                             _fmt(a.yes_no_mass), a.text or ""])
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())

    def _rewrite(self, complete: dict[str, list[ItemAnswer]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        original, self.path = self.path, tmp
        try:
            for condition, answers in complete.items():
                self.append(condition, answers)
        finally:
            self.path = original
        if tmp.exists():
            os.replace(tmp, self.path)
        else:
            self.path.unlink()
