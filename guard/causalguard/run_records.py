"""``run.json`` (the record an offline run keeps of what it is) and the other JSON records of offline runs
(``confirmation.json``, ``held_out.json``, validations), read back checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from causalguard.errors import ConfigError


def read_json_object(path: Path, *, what: str, hint: str) -> dict[str, Any]:
    """The JSON object in ``path``; a missing, damaged or non-object file is an error naming ``what`` it
    should be and the ``hint`` to fix it."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError.single(str(path), f"no such file (expected {what})", hint=hint) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError.single(str(path), f"unreadable {what} ({exc})", hint=hint) from None
    except RecursionError:
        raise ConfigError.single(str(path), f"unreadable {what} (nested too deeply)", hint=hint) from None
    if not isinstance(record, dict):
        raise ConfigError.single(str(path), f"the {what} is not a JSON object", hint=hint)
    return record


def read_run_record(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; a damaged record is a clear error (the run's other files are kept)."""
    return read_json_object(
        path, what="run record", hint="restore the file, or rerun with --restart (which starts the run over)"
    )
