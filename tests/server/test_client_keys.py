"""Client API keys on /v1: listed by id and SHA-256, 401 in OpenAI's shape otherwise, the key id (never the
key) in the logs, and no open endpoint on a non-loopback interface unless the operator says so."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from causalguard.adapters.hf.sae import LoadedSae
from causalguard.cli import app
from causalguard.config.schema import ApiKeySpec, ServerSpec
from causalguard.models.loaded import LoadedModel
from causalguard.server.client_keys import ANONYMOUS, check_client_key, is_loopback
from tests.guard_fakes import GUARD_YAML
from tests.server.test_server_app import ASK, _client, _wait_ready

KEY_A, KEY_B = "sk-team-a-0123456789", "sk-team-b-9876543210"


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


KEYS = [ApiKeySpec(id="team-a", sha256=_sha(KEY_A)), ApiKeySpec(id="team-b", sha256=_sha(KEY_B))]


@pytest.mark.parametrize(
    ("header", "key_id", "refusal"),
    [
        (f"Bearer {KEY_A}", "team-a", None),
        (f"bearer   {KEY_B} ", "team-b", None),
        (None, None, "an API key is required"),
        ("", None, "an API key is required"),
        (f"Basic {KEY_A}", None, "is not 'Bearer <key>'"),
        ("Bearer", None, "is not 'Bearer <key>'"),
        (f"Bearer {KEY_A}x", None, "not valid"),
        (f"Bearer {_sha(KEY_A)}", None, "not valid"),  # the digest is not the key
    ],
)
def test_a_key_is_checked_against_the_listed_digests(
    header: str | None, key_id: str | None, refusal: str | None
) -> None:
    checked = check_client_key(header, KEYS)
    assert checked.key_id == key_id
    assert (checked.refusal is None) if refusal is None else (refusal in (checked.refusal or ""))
    assert KEY_A not in (checked.refusal or "")


def test_without_keys_everyone_is_anonymous() -> None:
    assert check_client_key(None, []).key_id == ANONYMOUS
    assert check_client_key("Bearer whatever", []).key_id == ANONYMOUS


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("guard.internal", False),
    ],
)
def test_loopback_interfaces(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([{"id": "a", "sha256": "0" * 64}, {"id": "a", "sha256": "1" * 64}], "the id a is listed twice"),
        ([{"id": "a", "sha256": "0" * 64}, {"id": "b", "sha256": "0" * 64}], "listed twice"),
        ([{"id": "a", "sha256": "ABC"}], "sha256"),
        ([{"id": "a b", "sha256": "0" * 64}], "id"),
        ([{"id": "a", "key": "sk-plain"}], "key"),  # a key itself is not accepted in the config
    ],
)
def test_bad_key_lists_are_refused(keys: list[dict[str, str]], message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        ServerSpec.model_validate({"api_keys": keys})


def _yaml_with_keys() -> str:
    lines = "".join(f"    - {{id: {k.id}, sha256: {k.sha256}}}\n" for k in KEYS)
    return GUARD_YAML + "server:\n  api_keys:\n" + lines


def test_the_server_answers_only_listed_keys(
    tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with _client(tiny_lm, tiny_sae, tmp_path, _yaml_with_keys()) as c:
        _wait_ready(c)
        for headers in ({}, {"Authorization": f"Bearer {KEY_A}-wrong"}, {"Authorization": f"Basic {KEY_A}"}):
            refused = c.post("/v1/chat/completions", json=ASK, headers=headers)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            error = refused.json()["error"]
            assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
            assert c.get("/v1/models", headers=headers).status_code == 401
            assert c.get("/v1/models/tiny-llama", headers=headers).status_code == 401
        with caplog.at_level(logging.DEBUG, logger="causalguard.server.routes"):
            ok = c.post("/v1/chat/completions", json=ASK, headers={"Authorization": f"Bearer {KEY_B}"})
        assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"]
        assert any(getattr(r, "key_id", None) == "team-b" for r in caplog.records)
        assert not any(KEY_B in r.getMessage() for r in caplog.records)  # the id is logged, never the key
        assert c.get("/v1/models", headers={"Authorization": f"Bearer {KEY_A}"}).status_code == 200
        for open_path in ("/healthz", "/readyz", "/metrics"):  # probes and scrapes need no client key
            assert c.get(open_path).status_code == 200
        metrics = c.get("/metrics").text
        assert 'causalguard_requests_total{method="none",outcome="invalid",profile="none"} 3.0' in metrics


def test_serve_refuses_an_open_endpoint_on_other_interfaces(tmp_path: Path) -> None:
    path = tmp_path / "guard.yaml"
    path.write_text(GUARD_YAML)
    result = CliRunner().invoke(app, ["serve", "--config", str(path), "--host", "0.0.0.0"])
    flat = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and "lists no server.api_keys" in flat and "allow_anonymous" in flat


def test_keys_come_from_a_file_and_an_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from causalguard.config.loading import read_guard_config

    (tmp_path / "keys.txt").write_text(f"# team a\n{KEYS[0].id} {KEYS[0].sha256} 30\n\n")
    monkeypatch.setenv("GUARD_KEYS", f"{KEYS[1].id} {KEYS[1].sha256}, ops {_sha('sk-ops')} 5")
    path = tmp_path / "guard.yaml"
    path.write_text(GUARD_YAML + "server:\n  api_keys_file: keys.txt\n  api_keys_env: GUARD_KEYS\n")
    keys = read_guard_config(path).config.server.api_keys
    assert [(k.id, k.requests_per_minute) for k in keys] == [("team-a", 30), ("team-b", None), ("ops", 5)]
    assert check_client_key(f"Bearer {KEY_B}", keys).key_id == "team-b"


@pytest.mark.parametrize(
    ("file_text", "env_text", "where", "message"),
    [
        ("team-a\n", None, "keys.txt:1", "expected '<id> <sha256> [requests_per_minute]', got 1 fields"),
        (f"ok {'0' * 64}\nteam-a ABC\n", None, "keys.txt:2", "sha256"),
        (f"a {'0' * 64} fast\n", None, "keys.txt:1", "requests_per_minute must be a whole number"),
        (f"a {'0' * 64} 0\n", None, "keys.txt:1", "requests_per_minute"),
        (f"a {'0' * 64}\n", f"a {'1' * 64}", "$GUARD_KEYS:1", "the key id a is listed twice (first in"),
        (f"a {'0' * 64}\n", f"b {'2' * 64},c {'0' * 64}", "$GUARD_KEYS:1", "the key sha256 0000000000000000 is listed"),
        (None, "", "$GUARD_KEYS", "is not set"),
        (None, None, "keys.txt", "file not found"),
    ],
)
def test_bad_key_files_and_variables_are_located_errors(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    file_text: str | None,
    env_text: str | None,
    where: str,
    message: str,
) -> None:
    from causalguard.config.loading import read_guard_config
    from causalguard.errors import ConfigError

    if file_text is not None:
        (tmp_path / "keys.txt").write_text(file_text)
    monkeypatch.setenv("GUARD_KEYS", env_text or "")
    env_line = "  api_keys_env: GUARD_KEYS\n" if env_text is not None else ""
    file_line = "  api_keys_file: keys.txt\n" if file_text is not None or not env_line else ""
    path = tmp_path / "guard.yaml"
    path.write_text(GUARD_YAML + "server:\n" + file_line + env_line)
    with pytest.raises(ConfigError) as raised:
        read_guard_config(path)
    text = str(raised.value)
    assert message in text and where in text, text
    assert "sk-" not in text


def test_a_key_over_its_rate_limit_gets_a_429_with_retry_after(
    tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path
) -> None:
    yaml = _yaml_with_keys().replace(f"{{id: {KEYS[0].id},", f"{{requests_per_minute: 2, id: {KEYS[0].id},")
    yaml += "  requests_per_minute_per_key: 600\n"
    with _client(tiny_lm, tiny_sae, tmp_path, yaml) as c:
        _wait_ready(c)
        team_a, team_b = {"Authorization": f"Bearer {KEY_A}"}, {"Authorization": f"Bearer {KEY_B}"}
        assert [c.get("/v1/models", headers=team_a).status_code for _ in range(2)] == [200, 200]  # a burst of 2
        limited = c.post("/v1/chat/completions", json=ASK, headers=team_a)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"]["code"] == "rate_limit_exceeded"
        assert c.post("/v1/chat/completions", json=ASK, headers=team_b).status_code == 200  # its own bucket
        metrics = c.get("/metrics").text
        assert 'causalguard_requests_total{method="none",outcome="rate_limited",profile="none"} 1.0' in metrics


def test_token_buckets_refill_at_the_limit() -> None:
    from causalguard.server.rate_limits import KeyRateLimits

    now = [0.0]
    limits = KeyRateLimits(clock=lambda: now[0])
    assert [limits.acquire("a", 60) for _ in range(60)] == [0.0] * 60  # a burst of a minute's worth
    assert limits.acquire("a", 60) == pytest.approx(1.0)  # then one a second
    assert limits.acquire("b", 60) == 0.0 and limits.acquire("a", None) == 0.0
    now[0] = 0.5
    assert limits.acquire("a", 60) == pytest.approx(0.5)
    now[0] = 1.0
    assert limits.acquire("a", 60) == 0.0 and limits.acquire("a", 60) > 0
