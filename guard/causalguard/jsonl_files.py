"""Strict JSONL reading: every problem names the file, the line and the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from causalguard.errors import ConfigError, Problem
from causalguard.text_files import read_text_file
from causalguard.yaml_files import format_loc

Record = TypeVar("Record", bound=BaseModel)
MAX_FILE_BYTES = 64 * 1024 * 1024


class DuplicateKeyError(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's members, refusing a key given twice (``json`` would keep the last one silently)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(key)
        out[key] = value
    return out


def strict_json_loads(text: str) -> Any:
    """``json.loads`` that refuses duplicate keys (``DuplicateKeyError``) and nesting too deep for the
    parser (``RecursionError``)."""
    return json.loads(text, object_pairs_hook=_unique_keys)


def read_jsonl(path: Path, model: type[Record], *, what: str) -> list[tuple[Record, int]]:
    """Every non-blank line of ``path`` validated as ``model``, with its line number.

    Raises ``ConfigError`` listing every bad line (invalid JSON, a key given twice in one object, nesting
    too deep, a missing or wrong field)."""
    lines = read_text_file(
        path, max_bytes=MAX_FILE_BYTES, kind="a JSONL file", too_large_hint=f"split the {what} into smaller files"
    ).splitlines()
    problems: list[Problem] = []
    records: list[tuple[Record, int]] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            records.append((model.model_validate(strict_json_loads(text)), number))
        except json.JSONDecodeError as exc:
            problems.append(
                Problem(
                    str(path),
                    number,
                    "",
                    f"invalid JSON: {exc.msg} (column {exc.colno})",
                    hint="one JSON object per line",
                )
            )
        except DuplicateKeyError as exc:
            problems.append(
                Problem(
                    str(path),
                    number,
                    str(exc),
                    f"the key {str(exc)!r} is given twice in one object",
                    hint="keep one of them",
                )
            )
        except RecursionError:
            problems.append(
                Problem(str(path), number, "", "JSON nested too deeply", hint=f"a {what} record is a flat object")
            )
        except ValidationError as exc:
            for error in exc.errors():
                loc = [p for p in error["loc"] if isinstance(p, int | str)]
                problems.append(Problem(str(path), number, format_loc(loc), error["msg"]))
    if problems:
        raise ConfigError(problems)
    if not records:
        raise ConfigError.single(str(path), f"no {what} in the file", hint="one JSON object per line")
    return records
