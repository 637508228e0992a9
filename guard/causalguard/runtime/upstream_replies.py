"""Replies from the proxy-mode upstream, for audits: a blocking chat completion (the audit thread's own
HTTP client, apart from the server's pool), greedy, so an audit judges what users are served."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from causalguard.config.schema import UpstreamSpec
from causalguard.runtime.engine_levers import EngineRequest

# (composed messages, max tokens, where the request goes and its extra body fields) -> reply text
Complete = Callable[[list[dict[str, str]], int, EngineRequest], str]


def upstream_completer(
    spec: UpstreamSpec, *, api_key: str | None = None, transport: httpx.BaseTransport | None = None
) -> Complete:
    """A function that asks an upstream for one greedy reply (the main one, or the one a request is routed
    to: an upstream started with a control vector); upstream failures raise (audits count them)."""
    clients: dict[str, httpx.Client] = {}

    def client_for(base_url: str) -> httpx.Client:
        if base_url not in clients:
            clients[base_url] = httpx.Client(
                base_url=base_url.rstrip("/"),
                headers={"authorization": f"Bearer {api_key}"} if api_key else {},
                timeout=httpx.Timeout(spec.timeout_seconds, connect=spec.connect_timeout_seconds),
                transport=transport,
            )
        return clients[base_url]

    def complete(messages: list[dict[str, str]], max_tokens: int, routed: EngineRequest) -> str:
        body = {"model": spec.model, "messages": messages, "max_tokens": max_tokens, "temperature": 0.0}
        response = client_for(routed.base_url or spec.base_url).post("/chat/completions", json={**body, **routed.body})
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"] or "")

    return complete
