"""``run.json``: the record an offline run (survey, reply run) keeps of what it is, read back checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from causalguard.errors import ConfigError


def read_run_record(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; a damaged record is a clear error (the run's other files are kept)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError.single(str(path), f"unreadable run record ({exc})",
                                 hint="restore the file, or rerun with --restart (which starts the run over)") from None
    if not isinstance(record, dict):
        raise ConfigError.single(str(path), "the run record is not a JSON object",
                                 hint="restore the file, or rerun with --restart (which starts the run over)")
    return record
