"""Steering conditions: what else (besides the role) is done to the model while it answers.

A condition may change the prompt (``prompt_note``) and/or the model's computation (``applied``,
a context manager that installs hooks and removes them on exit). The survey crosses roles with
conditions; SAE feature steering implements the same protocol.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class SteeringCondition(Protocol):
    @property
    def id(self) -> str: ...

    def prompt_note(self) -> str | None:
        """Extra instruction added to the prompt, or None."""
        ...

    def applied(self, model: Any) -> AbstractContextManager[object]:
        """Context manager active around every forward pass of this condition."""
        ...


@dataclass(frozen=True)
class NoSteering:
    """The unsteered model."""

    id: str = "none"

    def prompt_note(self) -> str | None:
        return None

    def applied(self, model: Any) -> AbstractContextManager[object]:
        return nullcontext()


@dataclass(frozen=True)
class PromptSteering:
    """A prompt-level condition: an instruction added after the role text."""

    id: str
    text: str

    def prompt_note(self) -> str | None:
        return self.text

    def applied(self, model: Any) -> AbstractContextManager[object]:
        return nullcontext()
