"""Converting between LangChain messages and the chat-template dicts the guard composes."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

_ROLES = {"system": "system", "human": "user", "ai": "assistant"}


def to_dicts(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    out = []
    for message in messages:
        role = _ROLES.get(message.type)
        if role is None:
            raise ValueError(f"unsupported message type '{message.type}': use system, human or ai messages")
        out.append({"role": role, "content": message.text})
    return out


def to_messages(dicts: Sequence[dict[str, str]]) -> list[BaseMessage]:
    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    return [kinds[d["role"]](content=d["content"]) for d in dicts]
