"""Score matrices: rows are conditions, columns are value dimensions.

Read from a survey output folder or any CSV (our ``scores.csv`` or the paper's format with
``steer_dim``/``player_name`` id columns and ``<value>:scstd`` columns). Problems that would crash
deep inside causal-learn (NaN, constant or duplicate columns, too few rows) are caught here: rows or
columns that can be dropped are dropped with a logged reason, everything else is a clear error.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from causalguard.errors import ConfigError

log = logging.getLogger(__name__)

KNOWN_ID_COLUMNS = ("condition", "role_kind", "steering", "steer_dim", "player_name")
DEFAULT_EXCLUDE = r"(:scstd$|^stds$|^scstds$)"
MIN_EXTRA_ROWS = 5  # Fisher-z needs n - |S| - 3 > 0 for conditioning sets up to p - 2 variables


@dataclass
class ScoreMatrix:
    """Condition rows x value columns, with row ids and what was dropped on the way in."""

    columns: list[str]
    values: np.ndarray
    row_ids: list[str]
    row_info: list[dict[str, str]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.values.shape[0]), int(self.values.shape[1]))

    def rows(self, mask: np.ndarray) -> ScoreMatrix:
        keep = np.flatnonzero(mask)
        return ScoreMatrix(
            self.columns,
            self.values[keep],
            [self.row_ids[i] for i in keep],
            [self.row_info[i] for i in keep] if self.row_info else [],
            list(self.dropped),
        )

    def correlation(self) -> np.ndarray:
        return np.corrcoef(self.values, rowvar=False)


def read_score_matrix(
    source: Path, *, id_columns: list[str] | None = None, exclude: str = DEFAULT_EXCLUDE
) -> ScoreMatrix:
    """Read ``source``: a survey folder (its ``scores.csv``) or a score-matrix CSV."""
    path = source / "scores.csv" if source.is_dir() else source
    if not path.exists():
        raise ConfigError.single(str(source), "no score matrix here", hint="give a survey output folder or a CSV file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError.single(
            str(path), f"not UTF-8 text (byte {exc.start})", line=line, hint="save the CSV as UTF-8"
        ) from None
    if "\x00" in text:
        raise ConfigError.single(
            str(path),
            "a NUL byte in the CSV",
            line=text[: text.index("\x00")].count("\n") + 1,
            hint="the file is binary or damaged; write it again as UTF-8 text",
        )
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = list(reader.fieldnames or [])
    rows = list(reader)
    if not rows:
        raise ConfigError.single(str(path), "the CSV has no rows")
    ids = id_columns if id_columns is not None else [c for c in header if c in KNOWN_ID_COLUMNS]
    missing = [c for c in ids if c not in header]
    if missing:
        raise ConfigError.single(
            str(path),
            f"id column(s) not in the header: {', '.join(missing)}",
            line=1,
            field="--id-columns",
            hint=f"the header is: {', '.join(header)}",
        )
    try:
        pattern = re.compile(exclude) if exclude else None
    except re.error as exc:
        raise ConfigError.single(
            "--exclude",
            f"not a regular expression: {exc}",
            field="--exclude",
            hint=r"e.g. '(:scstd$|^stds$)'; escape ( ) [ ] with a backslash",
        ) from None
    candidates = [c for c in header if c not in ids and not (pattern and pattern.search(c))]
    dropped: list[str] = []
    columns: list[str] = []
    data: list[list[float]] = []
    for name in candidates:
        parsed = [_number(r[name]) for r in rows]
        if all(v is None for v in parsed):
            reason = "not numeric" if any((r[name] or "").strip() for r in rows) else "no values"
            dropped.append(f"column {name}: {reason}")
            continue
        columns.append(name)
        data.append([math.nan if v is None else v for v in parsed])
    if not columns:
        raise ConfigError.single(str(path), "no numeric value columns", line=1, hint="check --id-columns and --exclude")
    values = np.array(data, dtype=float).T
    row_ids = [" / ".join(r[c] for c in ids) if ids else str(i) for i, r in enumerate(rows)]
    matrix = ScoreMatrix(columns, values, row_ids, [{c: r[c] for c in ids} for r in rows], dropped)
    return clean(matrix, source=str(path))


def _number(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        return None


def clean(matrix: ScoreMatrix, *, source: str = "score matrix") -> ScoreMatrix:
    """Drop all-NaN columns, NaN rows, constant and duplicate columns (logged); check the row count."""
    values, columns, dropped = matrix.values, list(matrix.columns), list(matrix.dropped)
    keep_cols = [j for j in range(values.shape[1]) if not np.isnan(values[:, j]).all()]
    dropped += [f"column {columns[j]}: no values" for j in range(values.shape[1]) if j not in keep_cols]
    values, columns = values[:, keep_cols], [columns[j] for j in keep_cols]
    nan_rows = np.isnan(values).any(axis=1)
    if nan_rows.any():
        dropped.append(f"{int(nan_rows.sum())} row(s) with missing values")
    matrix = ScoreMatrix(columns, values, matrix.row_ids, matrix.row_info, dropped).rows(~nan_rows)
    values = matrix.values
    keep: list[int] = []
    for j in range(values.shape[1]):
        if values.shape[0] == 0 or np.ptp(values[:, j]) == 0:
            dropped.append(f"column {columns[j]}: constant")
            continue
        twin = next((k for k in keep if np.array_equal(values[:, k], values[:, j])), None)
        if twin is not None:
            dropped.append(f"column {columns[j]}: duplicate of {columns[twin]}")
            continue
        keep.append(j)
    for reason in dropped:
        log.warning("%s: dropped %s", source, reason)
    result = ScoreMatrix([columns[j] for j in keep], values[:, keep], matrix.row_ids, matrix.row_info, dropped)
    n, p = result.shape
    if p < 2:
        raise ConfigError.single(
            source,
            f"only {p} usable value column(s) after cleaning",
            hint="a graph needs at least two value dimensions; see the dropped columns: " + "; ".join(dropped),
        )
    if n < p + MIN_EXTRA_ROWS:
        raise ConfigError.single(
            source,
            f"{n} rows for {p} variables: too few for conditional independence tests",
            hint=f"survey at least {p + MIN_EXTRA_ROWS} conditions (more personas)",
        )
    return result
