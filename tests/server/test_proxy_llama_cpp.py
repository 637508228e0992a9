"""Proxy mode against a real, independent upstream: llama.cpp's OpenAI-compatible server (PyPI
llama-cpp-python[server], built by scripts/install-llama-cpp-server.sh) serving the embedded SmolLM2
GGUF on loopback, with the guard's server in front, driven by the ``openai`` client."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from causalguard.models.registry import EMBEDDED_MODELS
from causalguard.server.process import ServerProcess, free_port, serve_in_process

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"
ASK = [{"role": "user", "content": "I have a free weekend. Any ideas?"}]


def _need_llama_cpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        if os.environ.get("CAUSALGUARD_REQUIRE_LLAMA_CPP"):
            pytest.fail("llama-cpp-python is required here: run scripts/install-llama-cpp-server.sh")
        pytest.skip("llama-cpp-python not installed (scripts/install-llama-cpp-server.sh builds it)")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _need_llama_cpp()
    folder = tmp_path_factory.mktemp("llama")
    port = free_port()
    gguf = EMBEDDED_MODELS[MODEL].locate_gguf()
    log = (folder / "llama.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--model_alias",
            "smollm2-upstream",
            "--n_ctx",
            "2048",
            "--n_threads",
            "2",
            # its default stops a running stream (with [DONE]) whenever another request arrives, the
            # guard's /models health probe included
            "--interrupt_requests",
            "False",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None:
                raise AssertionError((folder / "llama.log").read_text()[-3000:])
            time.sleep(0.5)
        else:
            raise AssertionError("llama.cpp server not up after 120 s")
        yield url
    finally:
        process.terminate()
        process.wait(30)
        log.close()


@pytest.fixture(scope="module")
def guard(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("proxy")
    config = folder / "guard.yaml"
    config.write_text(
        f"model: {MODEL}\nsystem_prompt: You are a helpful assistant.\n"
        "units: survey\nmethod: role\nlimits: {max_levers: 1}\n"
        "targets:\n  stimulation: {direction: increase}\nprofiles:\n  plain: {}\n"
        "audit: {enabled: false}\nmonitor: {sample_rate: 1.0}\n"
        f"upstream:\n  base_url: {upstream}\n  model: smollm2-upstream\n  timeout_seconds: 120\n"
    )
    with serve_in_process(config, folder / "server.log") as process:
        yield process


def _judged(url: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics/", timeout=10).text
    return {
        s.labels["profile"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "causalguard_monitor_replies_total" and s.labels.get("outcome") == "judged"
    }


def test_the_live_monitor_judges_what_llama_cpp_served(guard: ServerProcess) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{guard.url}/v1", api_key="unused")
    before = _judged(guard.url)
    questions = [
        "Should I learn to surf this summer?",
        "How do I tell my boss I need a day off?",
        "What should I cook for friends tonight?",
    ]
    for question in questions:
        ask = [{"role": "user", "content": question}]
        client.chat.completions.create(model=f"{MODEL}:plain", messages=ask, max_tokens=16, temperature=0)  # type: ignore[arg-type]
        list(
            client.chat.completions.create(
                model=MODEL,
                messages=ask,
                max_tokens=16,
                temperature=0,  # type: ignore[arg-type]
                stream=True,
            )
        )
    deadline, after = time.monotonic() + 60, before
    while time.monotonic() < deadline:
        after = _judged(guard.url)
        if all(after.get(p, 0) - before.get(p, 0) == len(questions) for p in ("plain", "default")):
            break
        time.sleep(0.5)
    assert {p: after.get(p, 0) - before.get(p, 0) for p in ("plain", "default")} == {"plain": 3, "default": 3}
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{guard.url}/metrics/", timeout=10).text
    means = {
        (s.labels["profile"], s.labels["value"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "causalguard_monitor_value_score_mean"
    }
    assert {p for p, _ in means} >= {"plain", "default"} and all(abs(v) < 5 for v in means.values())
    assert not any(q in text for q in questions)


def test_proxy_replies_carry_their_scores_when_the_operator_exposes_them(upstream: str, tmp_path: Path) -> None:
    config = tmp_path / "guard.yaml"
    config.write_text(
        f"model: {MODEL}\nunits: survey\ntargets:\n  stimulation: {{direction: increase}}\n"
        "audit: {enabled: false}\n"
        "monitor: {expose_scores: true}\n"
        f"upstream:\n  base_url: {upstream}\n  model: smollm2-upstream\n  timeout_seconds: 120\n"
    )
    with serve_in_process(config, tmp_path / "server.log") as process:
        body = {"model": MODEL, "messages": ASK, "max_tokens": 16, "temperature": 0}
        reply = httpx.post(f"{process.url}/v1/chat/completions", json=body, timeout=120).json()
        scores = reply["causalguard"]["scores"]
        assert "stimulation" in scores and all(isinstance(x, float) for x in scores.values())
        with httpx.stream(
            "POST", f"{process.url}/v1/chat/completions", json={**body, "stream": True}, timeout=120
        ) as streamed:
            events = [line[6:] for line in streamed.iter_lines() if line.startswith("data: ")]
        last = [json.loads(e) for e in events if e != "[DONE]" and "causalguard" in json.loads(e)]
        assert len(last) == 1 and set(last[0]["causalguard"]["scores"]) == set(scores)


def test_the_openai_client_through_the_guard_to_llama_cpp(guard: ServerProcess, upstream: str) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{guard.url}/v1", api_key="unused")
    direct = openai.OpenAI(base_url=upstream, api_key="unused")
    guarded = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=24, temperature=0)  # type: ignore[arg-type]
    extra = guarded.model_extra or {}
    assert extra["causalguard"] == {"profile": "default", "levers": ["role:stimulation:+"]}
    assert guarded.model == MODEL and guarded.choices[0].message.content
    # what the guard sent: the operator's prompt, then the lever's instruction, in one system message. The
    # replies themselves are compared only by their prompts: llama.cpp reuses a cached prompt prefix between
    # requests, which changes the floating-point path, so greedy text depends on the request before it.
    instruction = (
        "Answer as someone who is strongly inclined to the value of Stimulation, which means "
        "excitement, novelty and challenge in life."
    )
    same = direct.chat.completions.create(
        model="smollm2-upstream",
        max_tokens=24,
        temperature=0,
        messages=[{"role": "system", "content": f"You are a helpful assistant.\n\n{instruction}"}, *ASK],
    )  # type: ignore[list-item]
    assert guarded.usage is not None and same.usage is not None
    assert guarded.usage.prompt_tokens == same.usage.prompt_tokens
    plain = client.chat.completions.create(model=f"{MODEL}:plain", messages=ASK, max_tokens=24, temperature=0)  # type: ignore[arg-type]
    unguarded = direct.chat.completions.create(
        model="smollm2-upstream",
        max_tokens=24,
        temperature=0,
        messages=[{"role": "system", "content": "You are a helpful assistant."}, *ASK],
    )  # type: ignore[list-item]
    assert plain.usage is not None and unguarded.usage is not None
    assert plain.usage.prompt_tokens == unguarded.usage.prompt_tokens < guarded.usage.prompt_tokens
    assert (plain.model_extra or {})["causalguard"]["levers"] == [] and plain.choices[0].message.content


def test_streaming_passes_through_token_by_token(guard: ServerProcess) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{guard.url}/v1", api_key="unused")
    whole = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=16, temperature=0)  # type: ignore[arg-type]
    stream = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=16, temperature=0, stream=True)  # type: ignore[arg-type]
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 3 and whole.choices[0].message.content
    assert (chunks[-1].model_extra or {}).get("causalguard", {}).get("profile") == "default"


def test_an_upstream_that_is_down_is_a_503(tmp_path: Path) -> None:
    _need_llama_cpp()
    config = tmp_path / "guard.yaml"
    config.write_text(
        f"model: {MODEL}\naudit: {{enabled: false}}\nupstream:\n"
        f"  base_url: http://127.0.0.1:{free_port()}/v1\n  model: x\n  retries: 1\n"
    )
    with serve_in_process(config, tmp_path / "server.log", loaded_only=True) as process:
        ready = httpx.get(f"{process.url}/readyz", timeout=10)
        response = httpx.post(
            f"{process.url}/v1/chat/completions", timeout=60, json={"model": MODEL, "messages": ASK, "max_tokens": 4}
        )
    assert ready.status_code == 503 and ready.json()["upstream"]["up"] is False  # out of rotation, not serving 503s
    assert response.status_code == 503 and response.json()["error"]["code"] == "upstream_unavailable"


def test_a_reply_audit_round_judges_what_the_upstream_serves(upstream: str, tmp_path: Path) -> None:
    from causalguard.runtime.value_guard import ValueGuard

    config = tmp_path / "guard.yaml"
    config.write_text(
        f"model: {MODEL}\nunits: survey\ntargets:\n  stimulation: {{direction: increase}}\n"
        "audit: {prompts_per_audit: 2, max_new_tokens: 16}\n"
        f"upstream:\n  base_url: {upstream}\n  model: smollm2-upstream\n"
    )
    with ValueGuard.from_config(config, start_audits=False) as guard:
        assert guard.auditor.complete is not None  # type: ignore[union-attr]
        pairs = guard.auditor.replies(guard.state, "default", guard.auditor.prompts[:2])  # type: ignore[union-attr]
        assert all(p.guarded and p.unguarded and p.guarded != p.unguarded for p in pairs)
        accumulated = guard.auditor.audit(guard.state, "default")  # type: ignore[union-attr]
        assert accumulated.estimate("stimulation").n == 2


def _start_llama(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    gguf = EMBEDDED_MODELS[MODEL].locate_gguf()
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--model_alias",
            "smollm2-upstream",
            "--n_ctx",
            "2048",
            "--n_threads",
            "2",
            # its default stops a running stream (with [DONE]) whenever another request arrives, the
            # guard's /models health probe included
            "--interrupt_requests",
            "False",
        ],
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )


def _until(predicate: Any, seconds: float) -> float:
    """Seconds until ``predicate()`` held (fails after ``seconds``)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds} s")


def _sample(url: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics/", timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


@pytest.mark.heavy
def test_an_operators_first_day_in_front_of_a_single_slot_llama_cpp_server(tmp_path: Path) -> None:
    """Audits running against a single-slot upstream: the first user request after start-up is answered
    within its normal latency, tokens match the upstream's usage, /readyz turns 503 when the upstream dies
    and 200 when it returns, and the log holds no audit traceback."""
    _need_llama_cpp()
    port = free_port()
    upstream_url = f"http://127.0.0.1:{port}/v1"
    process = _start_llama(port, tmp_path / "llama.log")

    def upstream_up() -> bool:
        try:
            return httpx.get(f"{upstream_url}/models", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _until(upstream_up, 120)
        body = {"model": "smollm2-upstream", "messages": ASK, "max_tokens": 24, "temperature": 0}
        started = time.monotonic()
        httpx.post(f"{upstream_url}/chat/completions", json=body, timeout=120).raise_for_status()
        normal = time.monotonic() - started
        config = tmp_path / "guard.yaml"
        config.write_text(
            f"model: {MODEL}\nunits: survey\nmethod: role\ntargets:\n  stimulation: {{direction: "
            "increase}\nprofiles:\n  plain: {}\n"
            "audit: {interval_seconds: 1, prompts_per_audit: 4, max_new_tokens: 48, "
            "max_cpu_share: 0.9}\n"
            f"upstream:\n  base_url: {upstream_url}\n  model: smollm2-upstream\n"
            "  health_interval_seconds: 0.5\n  retries: 0\n"
        )
        server_log = tmp_path / "server.log"
        with serve_in_process(config, server_log) as guard:
            _until(
                lambda: (
                    _sample(guard.url, "causalguard_audits_total") > 0
                    or "reply audit" in server_log.read_text(errors="replace")
                ),
                120,
            )  # audits are running
            started = time.monotonic()
            reply = httpx.post(
                f"{guard.url}/v1/chat/completions", timeout=120, json={**body, "model": f"{MODEL}:plain"}
            )
            first = time.monotonic() - started
            assert reply.status_code == 200, reply.text
            assert first < 3 * normal + 10, (first, normal)  # at most one audit reply in the way
            tokens = _sample(guard.url, "causalguard_generated_tokens_total", profile="plain")
            assert tokens == reply.json()["usage"]["completion_tokens"] > 0
            process.terminate()
            process.wait(30)
            down = _until(lambda: httpx.get(f"{guard.url}/readyz", timeout=5).status_code == 503, 30)
            assert down < 15
            assert _sample(guard.url, "causalguard_upstream_up") == 0
            process = _start_llama(port, tmp_path / "llama.log")
            _until(lambda: httpx.get(f"{guard.url}/readyz", timeout=5).status_code == 200, 120)
            assert _sample(guard.url, "causalguard_upstream_up") == 1
        text = server_log.read_text(errors="replace")
        assert "Traceback" not in text, text[-3000:]
    finally:
        process.terminate()
        process.wait(30)
