"""Proxy mode against a scripted upstream (httpx's MockTransport): what is forwarded, how failures map.
The real upstream (llama.cpp's server) is driven in test_proxy_llama_cpp.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from causalguard.adapters.hf.sae import LoadedSae
from causalguard.config.schema import UpstreamSpec
from causalguard.models.loaded import LoadedModel
from causalguard.server.upstream import Upstream
from tests.guard_fakes import GUARD_YAML
from tests.test_server_app import ASK, _client, _wait_ready

# the default profile's SAE lever cannot run upstream; its role lever drags achievement 0.2: allow it
PROXY_YAML = (GUARD_YAML.replace("achievement: {tolerance: 0.05}", "achievement: {tolerance: 0.5}")
              + "system_prompt: 'Be brief.'\nupstream:\n  base_url: http://upstream.test/v1\n  model: up-model\n")


def _reply(body: dict[str, Any]) -> dict[str, Any]:
    return {"id": "up-1", "object": "chat.completion", "created": 1, "model": "up-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "upstream says hi"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}


def _proxy(tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path, handler: Any) -> TestClient:
    client = _client(tiny_lm, tiny_sae, tmp_path, PROXY_YAML)
    spec = UpstreamSpec(base_url="http://upstream.test/v1", model="up-model", retries=1, timeout_seconds=2)
    client.app.state.guard_server.upstream = Upstream(spec, transport=httpx.MockTransport(handler))  # type: ignore[attr-defined]
    return client


def test_role_levers_are_composed_into_the_system_message_and_sae_levers_fall_back(
        tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json=_reply(seen[-1]))

    with _proxy(tiny_lm, tiny_sae, tmp_path, handler) as client:
        _wait_ready(client)
        guard = client.app.state.guard_server.guard  # type: ignore[attr-defined]
        assert guard.proxy and guard.sae is None
        assert all(lever.kind == "role" for plan in guard.state.plans.values() for lever in plan.levers)
        assert any("planned with role levers only" in r for r in guard.state.plan("default").reasons)
        body = client.post("/v1/chat/completions", json={**ASK, "profile": "kind", "seed": 7, "stop": ["\n\n"],
                                                          "temperature": 0.7, "top_p": 0.9}).json()
    assert body["choices"][0]["message"]["content"] == "upstream says hi"
    assert body["model"] == "tiny-llama" and body["causalguard"] == {"profile": "kind",
                                                                     "levers": ["role:benevolence:+"]}
    sent = seen[-1]
    assert sent["model"] == "up-model" and sent["seed"] == 7 and sent["max_tokens"] == 6
    assert sent["stop"] == ["\n\n"] and sent["top_p"] == 0.9 and sent["temperature"] == 0.7
    system = sent["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("Be brief.")
    assert "benevolence" in system["content"].lower() and sent["messages"][1] == ASK["messages"][0]


def test_a_stream_passes_through_and_ends_with_the_levers(tiny_lm: LoadedModel, tiny_sae: LoadedSae,
                                                           tmp_path: Path) -> None:
    pieces = ["Hel", "lo", "!"]

    def handler(request: httpx.Request) -> httpx.Response:
        lines = [{"id": "u", "object": "chat.completion.chunk", "model": "up-model",
                  "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces]
        lines.append({"id": "u", "object": "chat.completion.chunk", "model": "up-model",
                      "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        text = "".join(f"data: {json.dumps(x)}\n\n" for x in lines) + "data: [DONE]\n\n"
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})

    with _proxy(tiny_lm, tiny_sae, tmp_path, handler) as client:
        _wait_ready(client)
        text = client.post("/v1/chat/completions", json={**ASK, "stream": True}).text
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == "Hello!"
    assert all(e["model"] == "tiny-llama" for e in events) and "causalguard" in events[-1]
    assert text.rstrip().endswith("data: [DONE]")


@pytest.mark.parametrize(("failure", "status", "code"), [
    ("500", 502, "upstream_error"), ("429", 503, "upstream_error"), ("connect", 503, "upstream_unavailable"),
    ("timeout", 504, "upstream_timeout"),
])
def test_upstream_failures_map_to_502_503_504(tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path,
                                              failure: str, status: int, code: str) -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if failure == "connect":
            raise httpx.ConnectError("refused", request=request)
        if failure == "timeout":
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(int(failure), json={"error": {"message": "upstream broke"}})

    with _proxy(tiny_lm, tiny_sae, tmp_path, handler) as client:
        _wait_ready(client)
        response = client.post("/v1/chat/completions", json=ASK)
        streamed = client.post("/v1/chat/completions", json={**ASK, "stream": True}).text
        scraped = client.get("/metrics/").text
    assert response.status_code == status and response.json()["error"]["code"] == code, response.text
    assert code in streamed and streamed.rstrip().endswith("data: [DONE]")
    assert calls["n"] == (4 if failure == "connect" else 2)  # connect errors are retried once per request
    assert 'outcome="error"' in scraped and "causalguard_requests_in_flight 0.0" in scraped
