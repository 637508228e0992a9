"""Content hashes for a bundle folder: every file is checked before it is trusted.

``bundle.json`` carries an ``integrity`` record: the SHA-256 of every other file in the folder (by path
relative to it) and of ``bundle.json`` itself, computed over its bytes with its own hash written as 64
zeros. Sealing (``seal_bundle``) writes the record; every offline step that writes into a bundle seals it
again, and ``causalguard graph seal`` does it by hand after an intended edit. Loading
(``verify_bundle``) refuses a bundle where any byte of any file changed, a listed file is missing or a
file was added after sealing, with an error naming the file. A bundle with no record at all (written
before records existed) loads with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from causalguard.artifacts import BUNDLE_FILE
from causalguard.errors import ConfigError

log = logging.getLogger(__name__)

INTEGRITY_KEY = "integrity"
SELF_KEY = "bundle_json"
_PLACEHOLDER = "0" * 64
_SELF_FIELD = re.compile(rb'"' + SELF_KEY.encode() + rb'": "([^"]*)"')
SEAL_HINT = (
    "if you changed it on purpose, run 'causalguard graph seal BUNDLE'; otherwise rebuild or reinstall the bundle"
)


def bundle_files(folder: Path) -> list[str]:
    """Every file of the bundle but ``bundle.json``, as sorted POSIX paths relative to ``folder`` (hidden
    files and Python caches are not part of a bundle)."""
    out = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        if path.is_file() and rel.as_posix() != BUNDLE_FILE:
            out.append(rel.as_posix())
    return sorted(out)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _self_digest(raw: bytes, where: str) -> tuple[str, str]:
    """(recorded, actual) hash of ``bundle.json``'s bytes, the recorded one read as 64 zeros."""
    found = list(_SELF_FIELD.finditer(raw))
    if len(found) != 1 or not re.fullmatch(rb"[0-9a-f]{64}", found[0].group(1)):
        raise ConfigError.single(
            where,
            "its integrity record is damaged (no single 64-digit bundle_json hash)",
            field=f"{INTEGRITY_KEY}.{SELF_KEY}",
            hint=SEAL_HINT,
        )
    start, end = found[0].span(1)
    zeroed = raw[:start] + _PLACEHOLDER.encode() + raw[end:]
    return found[0].group(1).decode(), hashlib.sha256(zeroed).hexdigest()


def seal_bundle(folder: Path) -> dict[str, Any]:
    """Record the hash of every file in ``folder``'s ``bundle.json`` (rewritten atomically); returns the
    record. A folder without ``bundle.json`` is left alone (returns an empty record)."""
    path = folder / BUNDLE_FILE
    if not path.exists():
        return {}
    doc = json.loads(path.read_text(encoding="utf-8"))
    record = {
        "algorithm": "sha256",
        "files": {rel: file_sha256(folder / rel) for rel in bundle_files(folder)},
        SELF_KEY: _PLACEHOLDER,
    }
    doc[INTEGRITY_KEY] = record
    raw = (json.dumps(doc, indent=2) + "\n").encode("utf-8")
    _, digest = _self_digest(raw, str(path))
    raw = raw.replace(f'"{SELF_KEY}": "{_PLACEHOLDER}"'.encode(), f'"{SELF_KEY}": "{digest}"'.encode(), 1)
    scratch = path.with_name(f".{BUNDLE_FILE}.tmp")
    scratch.write_bytes(raw)
    os.replace(scratch, path)
    record[SELF_KEY] = digest
    return record


def verify_bundle(folder: Path, raw: bytes, doc: dict[str, Any]) -> bool:
    """Check ``bundle.json``'s bytes (``raw``, parsed as ``doc``) and every file against the integrity record.
    Returns False for a bundle with no record at all (logged); raises ``ConfigError`` naming the file
    that does not match."""
    where = str(folder / BUNDLE_FILE)
    record = doc.get(INTEGRITY_KEY)
    if record is None and not _SELF_FIELD.search(raw):
        log.warning(
            "bundle %s has no integrity record; its files are not checked (seal it with 'causalguard graph seal')",
            folder,
        )
        return False
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        raise ConfigError.single(where, "its integrity record is damaged", field=INTEGRITY_KEY, hint=SEAL_HINT)
    recorded, actual = _self_digest(raw, where)
    if recorded != actual or record.get(SELF_KEY) != recorded:
        raise ConfigError.single(
            where,
            "bundle.json changed since the bundle was sealed (its SHA-256 does not match the record)",
            field=f"{INTEGRITY_KEY}.{SELF_KEY}",
            hint=SEAL_HINT,
        )
    listed: dict[str, Any] = record["files"]
    present = set(bundle_files(folder))
    for rel in sorted(set(listed) | present):
        target = str(folder / rel)
        if rel not in present:
            raise ConfigError.single(target, "missing: the bundle's integrity record lists it", hint=SEAL_HINT)
        if rel not in listed:
            raise ConfigError.single(
                target, "not in the bundle's integrity record (added after the bundle was sealed)", hint=SEAL_HINT
            )
        if file_sha256(folder / rel) != listed[rel]:
            raise ConfigError.single(
                target,
                "changed since the bundle was sealed (its SHA-256 does not match bundle.json's integrity record)",
                hint=SEAL_HINT,
            )
    return True
