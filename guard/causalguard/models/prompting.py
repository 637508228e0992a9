"""Prompt text for chat models and for base models without a chat template."""

from __future__ import annotations

from typing import Any


def chat_text(tokenizer: Any, system: str | None, user: str, assistant_prefix: str = "") -> str:
    """The prompt text for one user turn, ready for the assistant's answer after ``assistant_prefix``.

    Uses the tokenizer's chat template when it has one (``system=None`` keeps the template's default
    system prompt); otherwise a plain transcript that base models continue sensibly.
    """
    if getattr(tokenizer, "chat_template", None):
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return str(text) + assistant_prefix
    head = f"{system}\n\n" if system else ""
    return f"{head}User: {user}\nAssistant: {assistant_prefix}"


def wants_bos(tokenizer: Any) -> bool:
    """Whether the model's prompts start with its BOS token: the tokenizer's ``add_bos_token`` flag, or, where
    a save/load round trip lost the flag (Gemma's GGUF tokenizer after ``save_pretrained``), whether its
    own default encoding starts with BOS."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    if getattr(tokenizer, "add_bos_token", False):
        return True
    probe: list[int] = tokenizer("a").input_ids
    return bool(probe) and probe[0] == bos


def encode_prefix(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a prompt's beginning: adds the model's BOS token (``wants_bos``) unless the text
    already has it."""
    ids: list[int] = tokenizer(text, add_special_tokens=False).input_ids
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None and wants_bos(tokenizer) and (not ids or ids[0] != bos):
        ids = [int(bos), *ids]
    return ids


def encode_continuation(tokenizer: Any, text: str) -> list[int]:
    """Token ids of text that continues a prompt (no special tokens)."""
    return list(tokenizer(text, add_special_tokens=False).input_ids)
