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
from tests.server.test_server_app import ASK, _client, _wait_ready

# the default profile's SAE lever cannot run upstream; its role lever drags achievement 0.2: allow it
PROXY_YAML = (
    GUARD_YAML.replace("achievement: {tolerance: 0.05}", "achievement: {tolerance: 0.5}")
    + "system_prompt: 'Be brief.'\nupstream:\n  base_url: http://upstream.test/v1\n  model: up-model\n"
)


def _reply(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "up-1",
        "object": "chat.completion",
        "created": 1,
        "model": "up-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "upstream says hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }


def _proxy(tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path, handler: Any) -> TestClient:
    client = _client(tiny_lm, tiny_sae, tmp_path, PROXY_YAML)
    spec = UpstreamSpec(base_url="http://upstream.test/v1", model="up-model", retries=1, timeout_seconds=2)

    def with_models(request: httpx.Request) -> httpx.Response:  # the guard's health probe: GET /models
        if request.method == "GET" and request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": [{"id": "up-model", "object": "model"}]})
        return handler(request)  # type: ignore[no-any-return]

    client.app.state.guard_server.upstream = Upstream(spec, transport=httpx.MockTransport(with_models))  # type: ignore[attr-defined]
    return client


def test_role_levers_are_composed_into_the_system_message_and_sae_levers_fall_back(
    tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path
) -> None:
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
        body = client.post(
            "/v1/chat/completions",
            json={**ASK, "profile": "kind", "seed": 7, "stop": ["\n\n"], "temperature": 0.7, "top_p": 0.9},
        ).json()
    assert body["choices"][0]["message"]["content"] == "upstream says hi"
    assert body["model"] == "tiny-llama" and body["causalguard"] == {
        "profile": "kind",
        "levers": ["role:benevolence:+"],
    }
    sent = seen[-1]
    assert sent["model"] == "up-model" and sent["seed"] == 7 and sent["max_tokens"] == 6
    assert sent["stop"] == ["\n\n"] and sent["top_p"] == 0.9 and sent["temperature"] == 0.7
    system = sent["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("Be brief.")
    assert "benevolence" in system["content"].lower() and sent["messages"][1] == ASK["messages"][0]


def test_a_stream_passes_through_and_ends_with_the_levers(
    tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path
) -> None:
    pieces = ["Hel", "lo", "!"]

    def handler(request: httpx.Request) -> httpx.Response:
        lines = [
            {
                "id": "u",
                "object": "chat.completion.chunk",
                "model": "up-model",
                "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}],
            }
            for p in pieces
        ]
        lines.append(
            {
                "id": "u",
                "object": "chat.completion.chunk",
                "model": "up-model",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
        )
        text = "".join(f"data: {json.dumps(x)}\n\n" for x in lines) + "data: [DONE]\n\n"
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})

    with _proxy(tiny_lm, tiny_sae, tmp_path, handler) as client:
        _wait_ready(client)
        text = client.post("/v1/chat/completions", json={**ASK, "stream": True}).text
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == "Hello!"
    assert all(e["model"] == "tiny-llama" for e in events) and "causalguard" in events[-1]
    assert text.rstrip().endswith("data: [DONE]")


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        ("500", 502, "upstream_error"),
        ("429", 503, "upstream_error"),
        ("connect", 503, "upstream_unavailable"),
        ("timeout", 504, "upstream_timeout"),
        ("502", 502, "upstream_error"),
        ("503", 503, "upstream_error"),
    ],
)
def test_upstream_failures_map_to_502_503_504(
    tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path, failure: str, status: int, code: str
) -> None:
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
    retried = failure in ("connect", "502", "503")  # retried once per request (retries=1), with backoff
    assert calls["n"] == (4 if retried else 2)
    assert 'outcome="error"' in scraped and "causalguard_requests_in_flight 0.0" in scraped


def _metric(client: TestClient, name: str, **labels: str) -> float | None:
    return client.app.state.guard_server.metrics.registry.get_sample_value(name, labels)  # type: ignore[attr-defined,no-any-return]


def test_a_502_then_an_answer_is_retried_and_tokens_come_from_the_upstreams_usage(
    tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path
) -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx.Response(502, json={"error": {"message": "warming up"}})
        return httpx.Response(200, json=_reply({}))

    with _proxy(tiny_lm, tiny_sae, tmp_path, handler) as client:
        _wait_ready(client)
        response = client.post("/v1/chat/completions", json={**ASK, "profile": "plain"})
        tokens = _metric(client, "causalguard_generated_tokens_total", profile="plain", method="none")
    assert response.status_code == 200 and calls["n"] == 2
    assert tokens == 3  # usage.completion_tokens of the upstream's answer


def test_a_proxied_stream_counts_its_tokens_and_time_to_first_token(
    tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        lines = [{"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}]
        lines += [{"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in "abcd"]
        lines.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        text = "".join(f"data: {json.dumps(x)}\n\n" for x in lines) + "data: [DONE]\n\n"
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})

    with _proxy(tiny_lm, tiny_sae, tmp_path, handler) as client:
        _wait_ready(client)
        client.post("/v1/chat/completions", json={**ASK, "profile": "plain", "stream": True})
        tokens = _metric(client, "causalguard_generated_tokens_total", profile="plain", method="none")
        ttft = _metric(client, "causalguard_time_to_first_token_seconds_count", profile="plain", method="none")
    assert tokens == 4 and ttft == 1  # the role-only chunk is not a token


def test_the_guards_own_timeout_ends_a_slow_upstream_call(
    tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path
) -> None:
    import asyncio
    import time

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"data": []})
        await asyncio.sleep(30)
        return httpx.Response(200, json=_reply({}))

    client = _client(tiny_lm, tiny_sae, tmp_path, PROXY_YAML + "server: {request_timeout_seconds: 0.5}\n")
    spec = UpstreamSpec(base_url="http://upstream.test/v1", model="up-model", retries=0, timeout_seconds=60)
    client.app.state.guard_server.upstream = Upstream(spec, transport=httpx.MockTransport(handler))  # type: ignore[attr-defined]
    with client:
        _wait_ready(client)
        started = time.monotonic()
        response = client.post("/v1/chat/completions", json={**ASK, "profile": "plain"})
        streamed = client.post("/v1/chat/completions", json={**ASK, "profile": "plain", "stream": True}).text
        elapsed = time.monotonic() - started
        timeouts = _metric(client, "causalguard_requests_total", profile="plain", method="none", outcome="timeout")
    assert response.status_code == 504 and response.json()["error"]["code"] == "timeout"
    assert '"timeout"' in streamed and streamed.rstrip().endswith("data: [DONE]")
    assert elapsed < 10 and timeouts == 2  # both ended at the guard's 0.5 s, not the upstream's 60 s


def test_readyz_follows_the_upstreams_health(tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path) -> None:
    import time

    alive = {"up": True}

    def handler(request: httpx.Request) -> httpx.Response:
        if not alive["up"]:
            raise httpx.ConnectError("refused", request=request)
        if request.method == "GET":
            return httpx.Response(200, json={"data": []})
        return httpx.Response(200, json=_reply({}))

    client = _client(
        tiny_lm,
        tiny_sae,
        tmp_path,
        PROXY_YAML.replace("model: up-model\n", "model: up-model\n  health_interval_seconds: 0.1\n"),
    )
    spec = UpstreamSpec(base_url="http://upstream.test/v1", model="up-model", retries=0, health_interval_seconds=0.1)
    client.app.state.guard_server.upstream = Upstream(spec, transport=httpx.MockTransport(handler))  # type: ignore[attr-defined]

    def ready_within(seconds: float, expected: int) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while True:
            answer = client.get("/readyz")
            if answer.status_code == expected or time.monotonic() > deadline:
                assert answer.status_code == expected, answer.json()
                return answer.json()  # type: ignore[no-any-return]
            time.sleep(0.05)

    with client:
        _wait_ready(client)
        assert ready_within(5, 200)["upstream"]["up"] is True
        assert _metric(client, "causalguard_upstream_up", model="up-model") == 1
        alive["up"] = False
        down = ready_within(5, 503)
        assert down["upstream"]["up"] is False and "ConnectError" in down["upstream"]["reason"]
        assert _metric(client, "causalguard_upstream_up", model="up-model") == 0
        assert client.post("/v1/chat/completions", json=ASK).status_code == 503
        alive["up"] = True
        assert ready_within(5, 200)["upstream"]["up"] is True


def test_a_stream_the_upstream_ends_without_a_finishing_chunk_still_reaches_the_monitor(
    tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:  # llama.cpp's answer when it generates nothing
        role = {"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
        return httpx.Response(
            200, text=f"data: {json.dumps(role)}\n\ndata: [DONE]\n\n", headers={"content-type": "text/event-stream"}
        )

    observed: list[tuple[str, str]] = []
    with _proxy(tiny_lm, tiny_sae, tmp_path, handler) as client:
        _wait_ready(client)
        guard = client.app.state.guard_server.guard  # type: ignore[attr-defined]
        guard.observe_reply = lambda profile, messages, text, **_: observed.append((profile, text))
        text = client.post("/v1/chat/completions", json={**ASK, "profile": "plain", "stream": True}).text
    assert text.rstrip().endswith("data: [DONE]") and observed == [("plain", "")]


@pytest.mark.parametrize("script", ["cut-before-text", "cut-after-text", "finished-without-done"])
def test_a_stream_the_upstream_closes_unfinished_is_an_error_not_a_short_reply(
    tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path, script: str
) -> None:
    # The body ends cleanly, but without a finish_reason or [DONE]: the upstream dropped the request
    def handler(request: httpx.Request) -> httpx.Response:
        role = {"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
        text = {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}
        stop = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        lines = {"cut-before-text": [role], "cut-after-text": [role, text], "finished-without-done": [role, text, stop]}
        body = "".join(f"data: {json.dumps(x)}\n\n" for x in lines[script])
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    observed: list[str] = []
    with _proxy(tiny_lm, tiny_sae, tmp_path, handler) as client:
        _wait_ready(client)
        guard = client.app.state.guard_server.guard  # type: ignore[attr-defined]
        guard.observe_reply = lambda profile, messages, text, **_: observed.append(text)
        text = client.post("/v1/chat/completions", json={**ASK, "profile": "plain", "stream": True}).text
        errors = _metric(client, "causalguard_requests_total", profile="plain", method="none", outcome="error")
    assert text.rstrip().endswith("data: [DONE]")
    if script == "finished-without-done":  # a finished choice is a whole reply
        assert '"error"' not in text and observed == ["Hi"] and errors is None
    else:
        assert "closed its stream before it finished" in text and '"upstream_error"' in text
        assert observed == [] and errors == 1
