"""Replies from the proxy-mode upstream, for audits: a blocking chat completion (the audit thread's own
HTTP client, apart from the server's pool), greedy, so an audit judges what users are served."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from causalguard.config.schema import UpstreamSpec

# (composed messages, max tokens, extra body fields such as llama.cpp's "lora" scales) -> reply text
Complete = Callable[[list[dict[str, str]], int, dict[str, Any]], str]


def upstream_completer(
    spec: UpstreamSpec, *, api_key: str | None = None, transport: httpx.BaseTransport | None = None
) -> Complete:
    """A function that asks the upstream for one greedy reply; upstream failures raise (audits count them)."""
    key = api_key
    client = httpx.Client(
        base_url=spec.base_url.rstrip("/"),
        headers={"authorization": f"Bearer {key}"} if key else {},
        timeout=httpx.Timeout(spec.timeout_seconds, connect=spec.connect_timeout_seconds),
        transport=transport,
    )

    def complete(messages: list[dict[str, str]], max_tokens: int, extra: dict[str, Any]) -> str:
        body = {"model": spec.model, "messages": messages, "max_tokens": max_tokens, "temperature": 0.0}
        response = client.post("/chat/completions", json={**extra, **body})
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"] or "")

    return complete
