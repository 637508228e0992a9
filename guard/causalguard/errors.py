"""Exceptions with actionable messages: every user-facing failure says what, where and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass


class CausalguardError(Exception):
    """Base class of every error causalguard raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One problem found in a file: where it is, which field, what is wrong, how to fix it."""

    path: str
    line: int | None
    field: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        text = f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        return f"{text}\n    fix: {self.hint}" if self.hint else text


class ConfigError(CausalguardError):
    """A file (inventory, roles, operator config, ...) failed validation; lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("ConfigError needs at least one problem")
        self.problems = problems
        head = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
        super().__init__(f"{head} in {problems[0].path}:\n" + "\n".join(f"  {p}" for p in problems))

    @classmethod
    def single(
        cls, path: str, message: str, *, line: int | None = None, field: str = "", hint: str | None = None
    ) -> ConfigError:
        return cls([Problem(path=path, line=line, field=field, message=message, hint=hint)])


class ModelNotAvailableError(CausalguardError):
    """A model was named that cannot be loaded here; the message names the install command."""
