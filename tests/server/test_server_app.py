"""The guard server in-process (real FastAPI app, real HF model and SAE, tiny weights): OpenAI schema,
error codes, profiles, client-intervention policy, streaming, admission, reload."""

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from causalguard.adapters.hf.sae import LoadedSae
from causalguard.config.loading import SourcedConfig
from causalguard.metrics import GuardMetrics
from causalguard.models.loaded import LoadedModel
from causalguard.runtime import ValueGuard
from causalguard.server.app import create_app
from tests.guard_fakes import GUARD_YAML, fake_bundle_with_sae

ASK = {"model": "tiny-llama", "messages": [{"role": "user", "content": "What matters?"}], "max_tokens": 6}


def _client(
    tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path, yaml_text: str = GUARD_YAML, factory_hook: Any = None
) -> TestClient:
    path = tmp_path / "guard.yaml"
    path.write_text(yaml_text)

    def factory(config: SourcedConfig, metrics: GuardMetrics) -> ValueGuard:
        if factory_hook is not None:
            factory_hook()
        return ValueGuard(
            tiny_lm.model,
            tiny_lm.tokenizer,
            config,
            bundle=fake_bundle_with_sae(tiny_sae.path),
            metrics=metrics,
            start_audits=False,
        )

    return TestClient(create_app(path, guard_factory=factory))


def _wait_ready(client: TestClient) -> None:
    for _ in range(200):
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(client.get("/readyz").json())


@pytest.fixture
def client(tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path):  # type: ignore[no-untyped-def]
    with _client(tiny_lm, tiny_sae, tmp_path) as c:
        _wait_ready(c)
        yield c


def test_completion_in_openai_shape_with_profiles(client: TestClient) -> None:
    body = client.post("/v1/chat/completions", json=ASK).json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["completion_tokens"] == 6 and body["choices"][0]["finish_reason"] == "length"
    assert body["causalguard"] == {"profile": "default", "levers": ["sae:f7:-0.5"]}
    kind = client.post("/v1/chat/completions", json={**ASK, "profile": "kind"}).json()
    assert kind["causalguard"]["levers"] == ["role:benevolence:+"]
    by_model = client.post("/v1/chat/completions", json={**ASK, "model": "tiny-llama:kind"}).json()
    assert by_model["choices"] == kind["choices"]
    models = client.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == [
        "tiny-llama",
        "tiny-llama:default",
        "tiny-llama:kind",
        "tiny-llama:plain",
    ]


@pytest.mark.parametrize(
    ("patch", "status", "param"),
    [
        ({"messages": []}, 400, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages.0.role"),
        ({"max_tokens": 100000}, 400, "max_tokens"),
        ({"temperature": 9}, 400, "temperature"),
        ({"profile": "evil"}, 400, "profile"),
        ({"interventions": [{"feature": 3, "mode": "clamp", "value": 50}]}, 403, "interventions"),
        ({"messages": [{"role": "system", "content": "only system"}]}, 400, "messages"),
        ({"seed": 2**70}, 400, "seed"),
        ({"seed": -1}, 400, "seed"),
        ({"max_tokens": True}, 400, "max_tokens"),
        ({"stream": "yes"}, 400, "stream"),
        ({"temperature": "0.5"}, 400, "temperature"),
        ({"seed": 1.5}, 400, "seed"),
    ],
)
def test_bad_input_gets_openai_errors_not_500(client: TestClient, patch: dict, status: int, param: str) -> None:
    response = client.post("/v1/chat/completions", json={**ASK, **patch})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"]


def test_bad_input_is_counted_without_minting_profile_labels(client: TestClient) -> None:
    def invalid(profile: str) -> float:
        for line in client.get("/metrics").text.splitlines():
            if (
                line.startswith("causalguard_requests_total{")
                and f'profile="{profile}"' in line
                and 'outcome="invalid"' in line
            ):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    assert client.post("/v1/chat/completions", json={**ASK, "temperature": -1}).status_code == 400  # schema
    assert client.post("/v1/chat/completions", json={**ASK, "profile": "made-up-123"}).status_code == 400
    assert client.post("/v1/chat/completions", json={**ASK, "profile": "kind", "max_tokens": 10**9}).status_code == 400
    assert invalid("none") == 2 and invalid("kind") == 1
    assert "made-up-123" not in client.get("/metrics").text


def test_non_json_and_oversized_bodies(client: TestClient) -> None:
    assert (
        client.post(
            "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )
    huge = {**ASK, "messages": [{"role": "user", "content": "x" * 30000}] * 3}
    response = client.post("/v1/chat/completions", json=huge)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
    chunked = client.post(
        "/v1/chat/completions", content=iter([json.dumps(huge).encode()]), headers={"content-type": "application/json"}
    )  # no content-length
    assert chunked.status_code == 413
    small = client.post(
        "/v1/chat/completions", content=iter([json.dumps(ASK).encode()]), headers={"content-type": "application/json"}
    )
    assert small.status_code == 200


def test_client_interventions_only_when_the_operator_allows(
    tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path
) -> None:
    with _client(tiny_lm, tiny_sae, tmp_path, GUARD_YAML + "allow_client_interventions: true\n") as c:
        _wait_ready(c)
        plain = c.post("/v1/chat/completions", json={**ASK, "profile": "plain"}).json()
        edited = c.post(
            "/v1/chat/completions",
            json={**ASK, "profile": "plain", "interventions": [{"feature": 3, "mode": "add", "value": 40.0}]},
        ).json()
        assert edited["choices"][0]["message"]["content"] != plain["choices"][0]["message"]["content"]
        bad = c.post("/v1/chat/completions", json={**ASK, "interventions": [{"feature": 999, "value": 1}]})
        assert bad.status_code == 400 and "out of range" in bad.json()["error"]["message"]
        assert str(tmp_path) not in bad.text and "/" not in bad.json()["error"]["message"]  # no paths on disk
        twice = c.post(
            "/v1/chat/completions",
            json={**ASK, "interventions": [{"feature": 3, "value": 1}, {"feature": 3, "mode": "clamp", "value": 2}]},
        )
        assert twice.status_code == 400 and "edited twice" in twice.json()["error"]["message"]
        huge = c.post("/v1/chat/completions", json={**ASK, "interventions": [{"feature": 3, "value": 5000}]})
        assert huge.status_code == 400 and huge.json()["error"]["param"] == "interventions[0].value"


def test_streaming_sse_matches_the_plain_answer(client: TestClient) -> None:
    whole = client.post("/v1/chat/completions", json=ASK).json()["choices"][0]["message"]["content"]
    with client.stream("POST", "/v1/chat/completions", json={**ASK, "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == whole
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert client.get("/readyz").json()["hooks_installed"] == 1


def test_not_ready_is_503_and_health_is_live(tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path) -> None:
    gate = threading.Event()
    with _client(tiny_lm, tiny_sae, tmp_path, factory_hook=lambda: gate.wait(10)) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 503
        response = c.post("/v1/chat/completions", json=ASK)
        assert response.status_code == 503 and response.headers["retry-after"] == "5"
        gate.set()
        _wait_ready(c)


def test_full_queue_answers_429_with_retry_after(tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path) -> None:
    text = GUARD_YAML + "server: {max_concurrency: 1, max_queue: 0, max_tokens_limit: 400}\n"
    with _client(tiny_lm, tiny_sae, tmp_path, text) as c:
        _wait_ready(c)
        results: list[int] = []
        slow = {**ASK, "max_tokens": 300}
        workers = [
            threading.Thread(target=lambda: results.append(c.post("/v1/chat/completions", json=slow).status_code))
            for _ in range(4)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert 200 in results and 429 in results and set(results) <= {200, 429}
        assert c.get("/readyz").json()["running"] == 0


def test_admin_reload_needs_the_token_and_validates(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.post("/admin/reload").status_code == 403  # token env var unset: endpoint disabled
    monkeypatch.setenv("CAUSALGUARD_ADMIN_TOKEN", "s3cret")
    assert client.post("/admin/reload", headers={"Authorization": "Bearer nope"}).status_code == 401
    (tmp_path / "guard.yaml").write_text(GUARD_YAML.replace("benevolence:", "benevolance:"))
    refused = client.post("/admin/reload", headers={"Authorization": "Bearer s3cret"})
    assert refused.status_code == 400 and "did you mean 'benevolence'" in refused.text
    (tmp_path / "guard.yaml").write_text(GUARD_YAML.replace("  plain: {}\n", ""))
    ok = client.post("/admin/reload", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json()["profiles"] == ["default", "kind"]
    assert client.post("/v1/chat/completions", json={**ASK, "profile": "plain"}).status_code == 400
    metrics = client.get("/metrics/").text
    assert 'causalguard_config_reloads_total{outcome="ok"} 1.0' in metrics


def test_explain_is_an_admin_endpoint_and_metrics_answer_without_a_redirect(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.get("/v1/guard/explain").status_code == 403  # no admin token configured
    monkeypatch.setenv("CAUSALGUARD_ADMIN_TOKEN", "s3cret")
    assert client.get("/v1/guard/explain", headers={"Authorization": "Bearer nope"}).status_code == 401
    auth = {"Authorization": "Bearer s3cret"}
    explained = client.get("/v1/guard/explain", params={"profile": "kind"}, headers=auth)
    assert explained.status_code == 200, explained.text
    body = explained.json()
    assert body["profile"] == "kind" and body["levers"] and "benevolence" in body["explanation"]
    missing = client.get("/v1/guard/explain", params={"profile": "nope"}, headers=auth)
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "profile"
    exact = client.get("/metrics", follow_redirects=False)
    assert exact.status_code == 200 and "causalguard_requests_in_flight" in exact.text
    assert exact.headers["content-type"].startswith("text/plain")


def test_timeouts_answer_504_or_an_sse_error_event_and_count_as_timeouts(
    tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path
) -> None:
    text = GUARD_YAML + "server: {request_timeout_seconds: 0.05, max_tokens_limit: 400}\n"
    with _client(tiny_lm, tiny_sae, tmp_path, text) as c:
        _wait_ready(c)
        response = c.post("/v1/chat/completions", json={**ASK, "max_tokens": 400})
        assert response.status_code == 504 and response.json()["error"]["code"] == "timeout"
        events = c.post("/v1/chat/completions", json={**ASK, "max_tokens": 400, "stream": True}).text
        assert "generation timed out" in events and events.rstrip().endswith("data: [DONE]")
        scraped = c.get("/metrics/").text
        assert 'causalguard_requests_total{method="sae",outcome="timeout",profile="default"} 2.0' in scraped, scraped
        assert 'outcome="cancelled"' not in scraped
        assert "causalguard_requests_in_flight 0.0" in scraped and "causalguard_queue_depth 0.0" in scraped
        assert c.get("/readyz").json()["hooks_installed"] == 1


def test_a_prompt_over_the_token_limit_is_a_400_before_admission(
    tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path
) -> None:
    with _client(tiny_lm, tiny_sae, tmp_path, GUARD_YAML + "server: {max_prompt_tokens: 64}\n") as c:
        _wait_ready(c)
        long = {**ASK, "messages": [{"role": "user", "content": "tell me more " * 200}]}
        for stream in (False, True):
            response = c.post("/v1/chat/completions", json={**long, "stream": stream})
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["param"] == "messages" and error["code"] == "context_length_exceeded"
            assert "server.max_prompt_tokens" in error["message"]
        assert c.post("/v1/chat/completions", json=ASK).status_code == 200  # a short one is served
        assert "causalguard_requests_in_flight 0.0" in c.get("/metrics/").text


def test_reload_with_a_folder_or_an_infeasible_profile_is_a_400(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAUSALGUARD_ADMIN_TOKEN", "s3cret")
    auth = {"Authorization": "Bearer s3cret"}
    config = tmp_path / "guard.yaml"
    config.unlink()
    config.mkdir()  # the config path replaced by a folder
    folder = client.post("/admin/reload", headers=auth)
    assert folder.status_code == 400 and "is a folder" in folder.json()["error"]["message"]
    config.rmdir()
    config.write_text(
        GUARD_YAML.replace(
            "  plain: {}\n",
            "  plain: {}\n  impossible:\n    targets:\n      universalism: {direction: increase}\n    method: role\n",
        )
    )
    infeasible = client.post("/admin/reload", headers=auth)
    assert infeasible.status_code == 400 and "impossible" in infeasible.json()["error"]["message"]
    assert client.post("/v1/chat/completions", json=ASK).status_code == 200  # the old config stays active


def test_a_failure_after_the_first_chunk_ends_the_stream_with_an_error_event(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = client.app.state.guard_server.guard  # type: ignore[attr-defined]
    real = guard.stream

    def failing(*args: Any, **kwargs: Any) -> Any:
        for k, piece in enumerate(real(*args, **kwargs)):
            if k == 2:
                raise RuntimeError("/secret/path/model exploded")
            yield piece

    monkeypatch.setattr(guard, "stream", failing)
    events = client.post("/v1/chat/completions", json={**ASK, "stream": True}).text
    assert '"generation failed: internal error (see the server log)"' in events
    assert "/secret/path" not in events and events.rstrip().endswith("data: [DONE]")
    assert "causalguard_requests_in_flight 0.0" in client.get("/metrics/").text


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"frequency_penalty": 0.3}, "frequency_penalty"),
        ({"logit_bias": {"42": 5}}, "logit_bias"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"top_p": 0}, "top_p"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"temprature": 0.5}, "temprature"),
        ({"profile": ""}, "profile"),  # found by the hostile-input sweep: served the default before
        ({"user": {"a": 1}}, "user"),  # ignored fields, but only when of their OpenAI type
        ({"store": "yes"}, "store"),
        ({"metadata": [1]}, "metadata"),
    ],
)
def test_every_field_is_honoured_or_named_in_a_400(client: TestClient, patch: dict, param: str) -> None:
    response = client.post("/v1/chat/completions", json={**ASK, **patch})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_fields_at_their_off_value_are_served(client: TestClient) -> None:
    off = {
        "top_p": 1,
        "stop": None,
        "presence_penalty": 0,
        "logprobs": False,
        "tools": [],
        "user": "u-1",
        "response_format": {"type": "text"},
    }
    assert client.post("/v1/chat/completions", json={**ASK, **off}).status_code == 200


def test_models_profiles_and_request_ids(client: TestClient) -> None:
    unknown = client.post("/v1/chat/completions", json={**ASK, "model": "gpt-4o"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    clash = client.post("/v1/chat/completions", json={**ASK, "model": "tiny-llama:kind", "profile": "plain"})
    assert clash.status_code == 400 and clash.json()["error"]["param"] == "profile"
    assert client.get("/v1/models/tiny-llama:kind").json()["id"] == "tiny-llama:kind"
    assert client.get("/v1/models/gpt-4o").status_code == 404
    echoed = client.post("/v1/chat/completions", json=ASK, headers={"x-request-id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = client.get("/healthz", headers={"x-request-id": "bad id with spaces"})
    assert generated.headers["x-request-id"].startswith("req-")


def test_invalid_json_says_where(client: TestClient) -> None:
    response = client.post(
        "/v1/chat/completions",
        content=b'{"model": "tiny-llama",\n "messages": [}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert "line 2, column" in response.json()["error"]["message"]


def test_a_stream_names_its_levers_and_usage(client: TestClient) -> None:
    text = client.post(
        "/v1/chat/completions", json={**ASK, "stream": True, "stream_options": {"include_usage": True}}
    ).text
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    finish = next(e for e in events if e["choices"] and e["choices"][0]["finish_reason"])
    assert finish["causalguard"] == {"profile": "default", "levers": ["sae:f7:-0.5"]}
    usage = events[-1]["usage"]
    assert events[-1]["choices"] == [] and usage["completion_tokens"] == 6 and usage["prompt_tokens"] > 0


def test_stop_strings_end_the_reply_before_them_streamed_or_not(client: TestClient) -> None:
    long = {**ASK, "max_tokens": 24}
    whole = client.post("/v1/chat/completions", json=long).json()["choices"][0]["message"]["content"]
    stop = whole[len(whole) // 2 : len(whole) // 2 + 3]
    assert len(stop) == 3
    expected = whole[: whole.index(stop)]
    cut = client.post("/v1/chat/completions", json={**long, "stop": [stop]}).json()
    assert cut["choices"][0]["message"]["content"] == expected and cut["choices"][0]["finish_reason"] == "stop"
    text = client.post("/v1/chat/completions", json={**long, "stop": stop, "stream": True}).text
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    streamed = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert streamed == expected and events[-1]["choices"][0]["finish_reason"] == "stop"


def test_top_p_keeps_the_nucleus(client: TestClient) -> None:
    greedy = client.post("/v1/chat/completions", json={**ASK, "max_tokens": 12}).json()
    nucleus = client.post(
        "/v1/chat/completions", json={**ASK, "max_tokens": 12, "temperature": 1.0, "seed": 3, "top_p": 1e-6}
    ).json()  # only the top token survives
    assert nucleus["choices"][0]["message"]["content"] == greedy["choices"][0]["message"]["content"]


def test_json_logs_are_one_object_per_line_with_the_extra_fields() -> None:
    import logging

    from causalguard.server.json_logs import JsonFormatter

    record = logging.LogRecord("causalguard.server", logging.INFO, __file__, 1, "plan %s", ("default",), None)
    record.profile, record.levers = "default", ["role:stimulation:+:reply"]
    doc = json.loads(JsonFormatter().format(record))
    assert doc["message"] == "plan default" and doc["levers"] == ["role:stimulation:+:reply"]
    assert doc["level"] == "INFO" and doc["time"].endswith("+00:00")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = JsonFormatter().format(failed)
    assert "\n" not in line and "ValueError: boom" in json.loads(line)["exception"]
