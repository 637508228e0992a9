"""Append-only answer storage that makes a survey resumable.

Answers are written one whole condition at a time (a single write, flushed and fsynced), so a killed
run leaves complete conditions plus at most one partial line. On resume, rows of incomplete
conditions are dropped and those conditions are recomputed from scratch; since a condition's batches
never depend on what ran before, the resumed results equal an uninterrupted run's exactly.
Floats are written with ``repr``, which round-trips exactly.

Every row ends with a CRC-32 of its other fields, so a row cut anywhere (even inside a number, where
the cut text would still parse) fails its check and its condition is recomputed. A file whose header
is not this version's is not resumed from: its conditions are all recomputed.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import zlib
from collections import defaultdict
from pathlib import Path

from causalguard.scoring.base import ItemAnswer

COLUMNS = ["condition", "item_id", "dimension", "polarity", "raw", "score", "yes_no_mass", "text", "crc"]

log = logging.getLogger(__name__)


def _fmt(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _crc(fields: list[str]) -> str:
    return f"{zlib.crc32(chr(31).join(fields).encode('utf-8')):08x}"


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"not finite: {text}")
    return value


class AnswerStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, expected_items: int) -> dict[str, list[ItemAnswer]]:
        """Complete conditions found on disk; rewrites the file without partial ones."""
        if not self.path.exists():
            return {}
        by_condition: dict[str, list[ItemAnswer]] = defaultdict(list)
        damaged = 0
        with self.path.open(newline="", encoding="utf-8", errors="replace") as handle:
            rows = csv.reader(handle)
            header = next(rows, None)
            if header != COLUMNS:
                log.warning("%s: not this version's checkpoint format; every condition is recomputed", self.path)
                self._rewrite({})
                return {}
            for fields in rows:
                answer = self._parse(fields)
                if answer is None:
                    damaged += 1  # a line cut short by a kill, or damaged: its condition falls short
                    continue
                by_condition[fields[0]].append(answer)
        complete = {
            c: a
            for c, a in by_condition.items()
            if len(a) == expected_items and len({x.item_id for x in a}) == expected_items
        }
        if damaged:
            log.warning("%s: %d damaged rows; their conditions are recomputed", self.path, damaged)
        unterminated = not self.path.read_bytes().endswith(b"\n")  # the next append would join its last line
        if len(complete) != len(by_condition) or damaged or unterminated:
            self._rewrite(complete)
        return complete

    @staticmethod
    def _parse(fields: list[str]) -> ItemAnswer | None:
        if len(fields) != len(COLUMNS) or _crc(fields[:-1]) != fields[-1]:
            return None
        _, item_id, dimension, polarity, raw, score, mass, text, _ = fields
        try:
            return ItemAnswer(
                item_id=item_id,
                dimension=dimension,
                polarity=int(polarity),
                raw=_finite(raw),
                score=_finite(score),
                yes_no_mass=_finite(mass) if mass else None,
                text=text or None,
            )
        except ValueError:
            return None

    def append(self, condition: str, answers: list[ItemAnswer]) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        new_file = not self.path.exists() or self.path.stat().st_size == 0
        if new_file:
            writer.writerow(COLUMNS)
        for a in answers:
            fields = [
                condition,
                a.item_id,
                a.dimension,
                str(a.polarity),
                _fmt(a.raw),
                _fmt(a.score),
                _fmt(a.yes_no_mass),
                a.text or "",
            ]
            writer.writerow([*fields, _crc(fields)])
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
