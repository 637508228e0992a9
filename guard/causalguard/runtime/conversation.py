"""Role levers as system-prompt composition (works for any chat model, local or remote)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Message = Mapping[str, Any]


def compose_messages(
    messages: Sequence[Message], operator_prompt: str | None, instructions: Sequence[str]
) -> list[dict[str, str]]:
    """One system message (operator prompt, then the client's system text, then lever instructions)
    followed by the conversation's other turns, in order."""
    client_system = [str(m["content"]) for m in messages if m.get("role") == "system"]
    parts = [p for p in (operator_prompt, *client_system, *instructions) if p]
    rest = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages if m.get("role") != "system"]
    if not rest:
        raise ValueError("messages need at least one user or assistant turn")
    return ([{"role": "system", "content": "\n\n".join(parts)}] if parts else []) + rest
