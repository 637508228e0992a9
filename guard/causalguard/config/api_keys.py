"""Client keys kept outside ``guard.yaml``: a file (``server.api_keys_file``, e.g. a mounted secret) or an
environment variable (``server.api_keys_env``), each entry ``<id> <sha256> [requests_per_minute]``.

They are added to ``server.api_keys`` when the config is read (at start and on every reload); an entry
that is not one, or a key id or digest listed twice anywhere, is an error naming the file (or variable)
and line, never a key silently dropped.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from causalguard.config.schema import ApiKeySpec, GuardConfig
from causalguard.errors import ConfigError
from causalguard.text_files import read_text_file

MAX_KEYS_FILE_BYTES = 1 << 20
ENTRY_FORMAT = "'<id> <sha256> [requests_per_minute]'"


def parse_key_entries(text: str, where: str, *, commas: bool = False) -> list[tuple[int, ApiKeySpec]]:
    """(line, key) for every entry of ``text``; blank lines and ``#`` comments are skipped. With ``commas``
    (an environment variable), entries may also be separated by commas."""
    out: list[tuple[int, ApiKeySpec]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0]
        for entry in line.split(",") if commas else [line]:
            parts = entry.split()
            if not parts:
                continue
            if len(parts) not in (2, 3):
                raise ConfigError.single(where, f"expected {ENTRY_FORMAT}, got {len(parts)} fields", line=number)
            fields: dict[str, object] = {"id": parts[0], "sha256": parts[1]}
            if len(parts) == 3:
                if not parts[2].isdigit():
                    raise ConfigError.single(
                        where,
                        f"requests_per_minute must be a whole number, got {parts[2][:20]!r}",
                        line=number,
                        field="requests_per_minute",
                    )
                fields["requests_per_minute"] = int(parts[2])
            try:
                out.append((number, ApiKeySpec.model_validate(fields)))
            except ValidationError as exc:
                error = exc.errors()[0]
                field = str(error["loc"][0]) if error["loc"] else "id"
                hint = 'the digest of printf %s "$KEY" | sha256sum, in lower-case hex' if field == "sha256" else None
                raise ConfigError.single(where, error["msg"], line=number, field=field, hint=hint) from None
    return out


def with_listed_keys(config: GuardConfig, base: Path | None) -> GuardConfig:
    """``config`` with the keys of ``server.api_keys_file`` (relative to ``base``) and ``server.api_keys_env``
    added to ``server.api_keys``; the same config when it names neither."""
    server = config.server
    if server.api_keys_file is None and server.api_keys_env is None:
        return config
    found: list[tuple[str, int | None, ApiKeySpec]] = [("server.api_keys", None, key) for key in server.api_keys]
    if server.api_keys_file is not None:
        path = Path(server.api_keys_file)
        path = path if path.is_absolute() or base is None else base / path
        text = read_text_file(
            path, max_bytes=MAX_KEYS_FILE_BYTES, kind="a keys file", too_large_hint="list at most 1000 keys"
        )
        found += [(str(path), n, key) for n, key in parse_key_entries(text, str(path))]
    if server.api_keys_env is not None:
        where = f"${server.api_keys_env}"
        value = os.environ.get(server.api_keys_env)
        if not value:
            raise ConfigError.single(
                where,
                "the environment variable is not set (server.api_keys_env)",
                hint="export it in the server's environment, or remove api_keys_env",
            )
        found += [(where, n, key) for n, key in parse_key_entries(value, where, commas=True)]
    if len(found) > 1000:
        raise ConfigError.single(found[-1][0], f"{len(found)} client keys; at most 1000", field="api_keys")
    for attribute in ("id", "sha256"):
        first: dict[str, str] = {}
        for where, line, key in found:
            value = getattr(key, attribute)
            if value in first:
                raise ConfigError.single(
                    where,
                    f"the key {attribute} {value[:16]} is listed twice (first in {first[value]})",
                    line=line,
                    field=attribute,
                    hint="every key needs its own id and digest",
                )
            first[value] = where if line is None else f"{where}:{line}"
    keys = [key for _, _, key in found]
    return config.model_copy(update={"server": server.model_copy(update={"api_keys": keys})})
