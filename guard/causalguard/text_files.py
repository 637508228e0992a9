"""Reading a text file the user named: bounded, UTF-8, and never blocking on a pipe.

Every reader of user files (YAML, JSONL, client-key lists) goes through ``read_text_file``, so a missing
file, a folder, a FIFO or device (whose read would block or never end), a file over its size limit and
bytes that are not UTF-8 are each one ``ConfigError`` naming the file, with how to fix it.
"""

from __future__ import annotations

from pathlib import Path

from causalguard.errors import ConfigError


def read_text_file(path: Path, *, max_bytes: int, kind: str, too_large_hint: str) -> str:
    """The UTF-8 text of ``path`` (``kind`` names what it should be, e.g. 'a YAML file', in errors).

    Raises ``ConfigError`` naming ``path``: not found, a folder, not a regular file, over ``max_bytes``
    (with ``too_large_hint``), or not UTF-8 (with the offending byte's offset)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ConfigError.single(str(path), "file not found", hint="check the path") from None
    if path.is_dir():
        raise ConfigError.single(str(path), f"is a folder, not {kind}", hint="give the path of the file")
    if not path.is_file():  # a FIFO or device would block the read (or never end)
        raise ConfigError.single(
            str(path), "is not a regular file (a pipe, socket or device)", hint=f"give the path of {kind}"
        )
    if size > max_bytes:
        raise ConfigError.single(
            str(path), f"file is {size} bytes, over the {max_bytes}-byte limit for {kind}", hint=too_large_hint
        )
    try:
        with path.open("rb") as stream:
            data = stream.read(max_bytes + 1)  # the file may have grown since stat()
    except FileNotFoundError:
        raise ConfigError.single(str(path), "file not found", hint="check the path") from None
    if len(data) > max_bytes:
        raise ConfigError.single(str(path), f"over the {max_bytes}-byte limit for {kind}", hint=too_large_hint)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError.single(
            str(path), f"not UTF-8 text (byte {exc.start}: {exc.reason})", hint="save the file as UTF-8"
        ) from None
