"""One bad request must not wedge the server: a denormal temperature, a row that cannot be sampled, an
iteration that fails and a row that overruns its deadline each end alone while the shared decode loop
goes on; the watchdog reports a stuck loop in /readyz (503) and a metric; ambiguous HTTP framing is a 400
at once. Tiny random Llama with the real tokenizer (batcher, in-process app) and the real server process."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from causalguard.adapters.hf.sae import LoadedSae
from causalguard.models.loaded import LoadedModel
from causalguard.runtime.batcher import ContinuousBatcher, DeadlineExceeded, DecodeSettings
from causalguard.runtime.generation import GenerationRow, chat_prompt_ids, row_generator, sample_token
from tests.server.test_server_app import ASK, _client, _wait_ready


def _row(lm: LoadedModel, text: str = "What should I cook tonight?", seed: int | None = None) -> GenerationRow:
    return GenerationRow(chat_prompt_ids(lm, [{"role": "user", "content": text}], None, []), (), seed)


@pytest.mark.parametrize("temperature", [5e-324, 1e-300, 1e-45, 1e-7])
def test_a_tiny_temperature_samples_the_top_token(temperature: float) -> None:
    scores = torch.randn(500) * 4
    assert sample_token(scores, temperature, 1.0, row_generator(3)) == int(scores.argmax())
    assert sample_token(scores, 1.0, 1e-30, row_generator(3)) == int(scores.argmax())  # the nucleus is the top


def test_non_finite_logits_are_a_sampling_error_not_a_nan_draw() -> None:
    from causalguard.runtime.generation import SamplingError

    with pytest.raises(SamplingError, match="not finite"):
        sample_token(torch.tensor([0.0, float("nan"), 1.0]), 0.7, 1.0, row_generator(1))
    with pytest.raises(SamplingError):
        sample_token(torch.full((4,), float("-inf")), 0.7, 1.0, row_generator(1))


def test_a_denormal_temperature_row_and_a_plain_row_share_the_loop(tiny_lm: LoadedModel) -> None:
    row = _row(tiny_lm, seed=2**63 - 1)
    with ContinuousBatcher(tiny_lm, max_rows=4) as batcher:
        greedy = batcher.submit(row, DecodeSettings(8)).result(timeout=60)
        denormal = batcher.submit(row, DecodeSettings(8, temperature=5e-324))
        plain = batcher.submit(_row(tiny_lm, "Any weekend ideas?"), DecodeSettings(8))
        assert denormal.result(timeout=60).tokens == greedy.tokens  # near-zero temperature is greedy
        assert len(plain.result(timeout=60).tokens) == 8
        assert batcher.health().alive and batcher.failed_steps == 0


def test_a_row_that_cannot_be_sampled_fails_alone(tiny_lm: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    import causalguard.runtime.batcher as batcher_module
    from causalguard.runtime.generation import SamplingError

    real = batcher_module.pick_token

    def poisoned(scores: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> int:
        if temperature == 0.5:
            raise SamplingError("the model's next-token logits are not finite")
        return real(scores, temperature, top_p, generator)

    monkeypatch.setattr(batcher_module, "pick_token", poisoned)
    with ContinuousBatcher(tiny_lm, max_rows=4) as batcher:
        bad = batcher.submit(_row(tiny_lm), DecodeSettings(20, temperature=0.5))
        good = batcher.submit(
            _row(tiny_lm, "Any weekend ideas?"),
            DecodeSettings(10, temperature=0.9),
        )
        with pytest.raises(SamplingError):
            bad.result(timeout=60)
        assert len(good.result(timeout=60).tokens) == 10
        after = batcher.submit(_row(tiny_lm), DecodeSettings(5)).result(timeout=60)
        assert len(after.tokens) == 5 and batcher.health().alive


def test_a_failing_iteration_ends_its_rows_and_the_loop_goes_on(
    tiny_lm: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    batcher = ContinuousBatcher(tiny_lm, max_rows=4)
    try:
        real_step, calls = batcher._step, {"n": 0}

        def failing_once() -> None:
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("a bug between forward passes")
            real_step()

        monkeypatch.setattr(batcher, "_step", failing_once)
        doomed = batcher.submit(_row(tiny_lm), DecodeSettings(30))
        with pytest.raises(RuntimeError, match="a bug between forward passes"):
            doomed.result(timeout=60)
        assert batcher.failed_steps == 1 and batcher.health().alive
        assert len(batcher.submit(_row(tiny_lm), DecodeSettings(6)).result(timeout=60).tokens) == 6
    finally:
        batcher.close()


def test_a_row_past_its_deadline_is_removed_and_the_others_finish(tiny_lm: LoadedModel) -> None:
    with ContinuousBatcher(tiny_lm, max_rows=4) as batcher:
        endless = batcher.submit(_row(tiny_lm), DecodeSettings(100_000), deadline=time.monotonic() + 0.3)
        short = batcher.submit(_row(tiny_lm, "Any weekend ideas?"), DecodeSettings(12))
        with pytest.raises(DeadlineExceeded):
            endless.result(timeout=30)
        assert endless.done and len(endless.tokens) < 100_000
        assert len(short.result(timeout=30).tokens) == 12
        expired = batcher.submit(_row(tiny_lm), DecodeSettings(5), deadline=time.monotonic() - 1)
        with pytest.raises(DeadlineExceeded):
            expired.result(timeout=30)
        assert batcher.rows == 0 and batcher.health().stalled_seconds == 0.0


class _StuckForward:
    """Makes the model's forward pass block until released: a decode loop stuck inside torch."""

    def __init__(self, model: Any) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, module: Any, args: Any) -> None:
        self.entered.set()
        self.release.wait(30)

    def remove(self) -> None:
        self.release.set()
        self.handle.remove()


def test_the_watchdog_sees_a_stuck_loop(tiny_lm: LoadedModel) -> None:
    with ContinuousBatcher(tiny_lm, max_rows=2) as batcher:
        assert not batcher.health().stuck(0.1)  # idle is healthy
        stuck = _StuckForward(tiny_lm.model)
        try:
            job = batcher.submit(_row(tiny_lm), DecodeSettings(4))
            assert stuck.entered.wait(10)
            time.sleep(0.3)
            health = batcher.health()
            assert health.alive and health.stalled_seconds >= 0.25 and health.stuck(0.2)
            assert not health.stuck(60)
        finally:
            stuck.remove()
        assert len(job.result(timeout=30).tokens) == 4
        assert not batcher.health().stuck(0.2)


def test_the_server_answers_a_valid_request_beside_a_denormal_temperature(
    tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path
) -> None:
    with _client(tiny_lm, tiny_sae, tmp_path) as c:
        _wait_ready(c)
        started = time.monotonic()
        baseline = c.post("/v1/chat/completions", json=ASK)
        normal = time.monotonic() - started
        assert baseline.status_code == 200
        bad = {**ASK, "temperature": 5e-324, "seed": 2**63 - 1}
        replies: dict[str, Any] = {}

        def send(name: str, body: dict[str, Any]) -> None:
            replies[name] = c.post("/v1/chat/completions", json=body)

        threads = [threading.Thread(target=send, args=("bad", bad)), threading.Thread(target=send, args=("ok", ASK))]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        both = time.monotonic() - started
        assert replies["ok"].status_code == 200 and replies["bad"].status_code == 200
        assert (
            replies["bad"].json()["choices"][0]["message"]["content"]
            == baseline.json()["choices"][0]["message"]["content"]
        )  # greedy in all but name
        # A wedged loop answered nothing before the 120 s request timeout; a shared, busy 2-core machine
        # can stretch a normal reply several-fold, so the bound is generous in seconds, tight against the wedge.
        assert both < 10 * normal + 30
        for body in (bad, {**ASK, "temperature": 1.0, "top_p": 1e-30}, ASK):  # in sequence, then a valid one
            response = c.post("/v1/chat/completions", json=body)
            assert response.status_code == 200, response.text
        ready = c.get("/readyz").json()
        assert ready["ready"] and ready["decode_loop"] == {
            "alive": True,
            "stuck": False,
            "stalled_seconds": 0.0,
            "rows": 0,
            "failed_steps": 0,
        }


def test_a_stuck_decode_loop_makes_readyz_503_and_sets_the_metric(
    tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path
) -> None:
    from tests.guard_fakes import GUARD_YAML

    text = GUARD_YAML + "server: {request_timeout_seconds: 0.5, decode_stall_seconds: 0.2}\n"
    with _client(tiny_lm, tiny_sae, tmp_path, text) as c:
        _wait_ready(c)
        stuck = _StuckForward(tiny_lm.model)
        try:
            started = time.monotonic()
            response = c.post("/v1/chat/completions", json=ASK)
            assert response.status_code == 504 and response.json()["error"]["code"] == "timeout"
            assert time.monotonic() - started < 20  # timeout + grace, not forever
            ready = c.get("/readyz")
            assert ready.status_code == 503 and ready.json()["decode_loop"]["stuck"] is True
            assert "causalguard_decode_loop_stuck 1.0" in c.get("/metrics/").text
        finally:
            stuck.remove()
        for _ in range(100):
            if c.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        assert c.get("/readyz").status_code == 200
        assert "causalguard_decode_loop_stuck 0.0" in c.get("/metrics/").text
        assert c.post("/v1/chat/completions", json=ASK).status_code == 200


def _raw_http(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and b"}" in data:
                break
        return data


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 10\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 10\r\n",
        b"Content-Length: 10\r\nContent-Length: 12\r\n",
    ],
)
def test_ambiguous_framing_is_a_400_at_once_over_real_http(
    tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path, framing: bytes
) -> None:
    import uvicorn

    from causalguard.server.app import create_app
    from causalguard.server.process import free_port
    from tests.guard_fakes import GUARD_YAML, fake_bundle_with_sae

    path = tmp_path / "guard.yaml"
    path.write_text(GUARD_YAML)

    def factory(config: Any, metrics: Any) -> Any:
        from causalguard.runtime import ValueGuard

        return ValueGuard(
            tiny_lm.model,
            tiny_lm.tokenizer,
            config,
            bundle=fake_bundle_with_sae(tiny_sae.path),
            metrics=metrics,
            start_audits=False,
        )

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(path, guard_factory=factory), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        started = time.monotonic()
        reply = _raw_http(
            port,
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + framing
            + b'\r\n{"model":',
        )
        assert time.monotonic() - started < 3
        assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    finally:
        server.should_exit = True
        thread.join(10)
