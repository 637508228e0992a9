"""Levers the proxy-mode upstream applies itself: llama.cpp's per-request LoRA scales. Only adapters the
operator lists in ``upstream.lora_adapters`` are planned in proxy mode; every request (and every audit
reply) sends each listed adapter's scale, the plan's at their strength and the rest at 0; a listed id that
is not an adapter lever of the catalog is an error naming its line. The real engine is driven in
tests/server/test_proxy_llama_cpp.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from causalguard.bundle.format import Bundle
from causalguard.bundle.lever import LeverSpec
from causalguard.config.loading import SourcedConfig, read_guard_config
from causalguard.config.schema import UpstreamSpec
from causalguard.errors import ConfigError
from causalguard.graphs.behaviour.report import with_reply_only_levers
from causalguard.graphs.levers.verdicts import attach_replies
from causalguard.metrics import GuardMetrics
from causalguard.models.loaded import LoadedModel
from causalguard.runtime.engine_levers import lora_scales, upstream_body_extra
from causalguard.runtime.state import build_guard_state
from causalguard.runtime.value_guard import ValueGuard
from causalguard.server.app import create_app
from causalguard.server.upstream import Upstream
from tests.guard_fakes import BASELINE, fake_bundle_v2, fake_catalog_v2, reply_row
from tests.server.test_server_app import ASK, _wait_ready

KIND = LeverSpec.value_adapter("benevolence", 1, "benevolence-up", 1.0)
CALM = LeverSpec.value_adapter("power", -1, "power-down", 0.5)
DRIVEN = LeverSpec.vector("achievement", 0.3, 5)  # served by an upstream started with its control vector
CVEC_URL = "http://cvec.test/v1"
PROXY = """\
model: tiny-llama
system_prompt: Be brief.
targets:
  power: {direction: decrease}
method: adapter
profiles:
  kind:
    targets:
      benevolence: {direction: increase}
    method: adapter
  plain: {}
audit:
  enabled: false
upstream:
  base_url: http://upstream.test/v1
  model: up-model
  lora_adapters:
"""


def _adapter_bundle() -> Bundle:
    base = with_reply_only_levers(fake_catalog_v2(), [KIND, CALM, DRIVEN])
    kept = [
        reply_row(e.id, {d: x.mean for d, x in e.replies.effects.items()}, target=e.target, direction=e.direction)
        for e in base.levers
        if e.replies is not None
    ]
    rows = [
        reply_row(KIND.id, {"benevolence": 0.3}, target="benevolence"),
        reply_row(CALM.id, {"power": -0.3}, target="power", direction=-1),
        reply_row(DRIVEN.id, {"achievement": 0.25}, target="achievement"),
        *kept,
    ]
    bundle = fake_bundle_v2()
    bundle.catalog = attach_replies(base, rows, BASELINE)
    return bundle


def _config(tmp_path: Path, adapters: list[str]) -> SourcedConfig:
    path = tmp_path / "guard.yaml"
    path.write_text(PROXY + "".join(f"    - '{a}'\n" for a in adapters))
    return read_guard_config(path)


def test_every_listed_adapter_gets_a_scale_and_the_plans_are_at_their_strength(tmp_path: Path) -> None:
    state = build_guard_state(_config(tmp_path, [CALM.id, KIND.id]), _adapter_bundle(), sae=None, local_model=False)
    assert [lever.id for lever in state.plan("default").levers] == [CALM.id]
    assert [lever.id for lever in state.plan("kind").levers] == [KIND.id]
    assert lora_scales(state.plan("default"), [CALM.id, KIND.id]) == [{"id": 0, "scale": 0.5}, {"id": 1, "scale": 0.0}]
    assert lora_scales(state.plan("kind"), [CALM.id, KIND.id]) == [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 1.0}]
    assert upstream_body_extra(state.plan("plain"), [CALM.id, KIND.id]) == {
        "lora": [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.0}]
    }
    assert upstream_body_extra(state.plan("plain"), []) == {}
    assert (
        state.plan("kind").reasons[-1]
        == f"applied by the upstream engine: {KIND.id} (llama-server --lora id 1, scaled per request)"
    )
    assert state.interventions["kind"] == ()  # nothing runs locally in proxy mode


def test_an_adapter_the_upstream_did_not_load_is_not_planned(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        build_guard_state(_config(tmp_path, [CALM.id]), _adapter_bundle(), sae=None, local_model=False)
    text = str(raised.value)
    assert "profile 'kind'" in text and f"{KIND.id} +0.30 (+0.25 .. +0.35), moves it but is not allowed here" in text
    assert "upstream.lora_adapters" in text


@pytest.mark.parametrize(
    ("listed", "message"),
    [
        (["adapter:nope:+:x:s1"], "is not a lever of the bundle's catalog"),
        (["role:power:-"], "is a role lever"),
    ],
)
def test_a_listed_id_that_is_not_an_adapter_lever_names_its_line(
    tmp_path: Path, listed: list[str], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        build_guard_state(_config(tmp_path, [CALM.id, *listed]), _adapter_bundle(), sae=None, local_model=False)
    problem = raised.value.problems[0]
    assert message in problem.message and problem.field == "upstream.lora_adapters.1"
    assert problem.line == PROXY.count("\n") + 2


def test_a_listed_twice_adapter_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="listed twice"):
        UpstreamSpec(base_url="http://x/v1", model="m", lora_adapters=[KIND.id, KIND.id])
    with pytest.raises(ValidationError, match="is not an http"):
        UpstreamSpec(base_url="http://x/v1", model="m", control_vectors={DRIVEN.id: "ftp://cvec"})
    with pytest.raises(ValidationError, match="is not a model name"):
        UpstreamSpec(base_url="http://x/v1", model="m", lora_models={KIND.id: " padded "})


def test_proxied_requests_carry_the_profiles_lora_scales(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    path = tmp_path / "guard.yaml"
    path.write_text(PROXY + f"    - '{CALM.id}'\n    - '{KIND.id}'\n")
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "up-model", "object": "model"}]})
        seen.append(json.loads(request.content))
        message = {"role": "assistant", "content": "hi"}
        return httpx.Response(
            200,
            json={
                "id": "u",
                "object": "chat.completion",
                "created": 1,
                "model": "up-model",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            },
        )

    def factory(config: SourcedConfig, metrics: GuardMetrics) -> ValueGuard:
        return ValueGuard(
            tiny_lm.model, tiny_lm.tokenizer, config, bundle=_adapter_bundle(), metrics=metrics, start_audits=False
        )

    spec = UpstreamSpec(base_url="http://upstream.test/v1", model="up-model", retries=0)
    client = TestClient(create_app(path, guard_factory=factory))
    client.app.state.guard_server.upstream = Upstream(spec, transport=httpx.MockTransport(handler))  # type: ignore[attr-defined]
    with client:
        _wait_ready(client)
        for profile in ("default", "kind", "plain"):
            reply = client.post("/v1/chat/completions", json={**ASK, "profile": profile})
            assert reply.status_code == 200, reply.text
    assert [body["lora"] for body in seen] == [
        [{"id": 0, "scale": 0.5}, {"id": 1, "scale": 0.0}],
        [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 1.0}],
        [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.0}],
    ]


def _cvec_config(tmp_path: Path, lever_id: str = DRIVEN.id) -> SourcedConfig:
    path = tmp_path / "guard.yaml"
    text = PROXY.replace(
        "  plain: {}\n", "  plain: {}\n  driven:\n    targets:\n      achievement: {direction: increase}\n"
    )
    path.write_text(text + f"    - '{CALM.id}'\n    - '{KIND.id}'\n  control_vectors:\n    '{lever_id}': {CVEC_URL}\n")
    return read_guard_config(path)


def test_a_control_vector_lever_is_planned_and_routed_to_its_upstream(tmp_path: Path) -> None:
    from causalguard.runtime.engine_levers import engine_request

    sourced = _cvec_config(tmp_path)
    spec = sourced.config.upstream
    state = build_guard_state(sourced, _adapter_bundle(), sae=None, local_model=False)
    driven = state.plan("driven")
    assert [lever.id for lever in driven.levers] == [DRIVEN.id]
    assert (
        driven.reasons[-1]
        == f"applied by the upstream engine: {DRIVEN.id} (the control vector of the upstream at {CVEC_URL})"
    )
    routed = engine_request(driven, spec)
    assert routed.base_url == CVEC_URL and routed.body == {"lora": [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.0}]}
    assert engine_request(state.plan("kind"), spec).base_url is None  # the main upstream


def test_a_control_vector_entry_that_is_not_a_vector_lever_names_its_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        build_guard_state(_cvec_config(tmp_path, KIND.id), _adapter_bundle(), sae=None, local_model=False)
    problem = raised.value.problems[0]
    assert "is a adapter lever; control_vectors lists vector levers" in problem.message
    assert problem.field == f"upstream.control_vectors.{KIND.id}" and problem.line is not None


def test_proxied_requests_of_a_control_vector_profile_go_to_its_upstream(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    sourced = _cvec_config(tmp_path)
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "up-model", "object": "model"}]})
        hosts.append(request.url.host)
        message = {"role": "assistant", "content": "hi"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return httpx.Response(
            200, json={"id": "u", "object": "chat.completion", "created": 1, "model": "m", "choices": [choice]}
        )

    def factory(config: SourcedConfig, metrics: GuardMetrics) -> ValueGuard:
        return ValueGuard(
            tiny_lm.model, tiny_lm.tokenizer, config, bundle=_adapter_bundle(), metrics=metrics, start_audits=False
        )

    assert sourced.path is not None
    client = TestClient(create_app(sourced.path, guard_factory=factory))
    server = client.app.state.guard_server  # type: ignore[attr-defined]
    spec = UpstreamSpec(base_url="http://upstream.test/v1", model="up-model", retries=0)
    server.upstream = Upstream(spec, transport=httpx.MockTransport(handler))
    cvec_spec = spec.model_copy(update={"base_url": CVEC_URL})
    server.engine_upstreams = {CVEC_URL: Upstream(cvec_spec, transport=httpx.MockTransport(handler))}
    with client:
        _wait_ready(client)
        assert "control_vector_upstreams" in client.get("/readyz").json()
        for profile in ("driven", "kind", "plain"):
            assert client.post("/v1/chat/completions", json={**ASK, "profile": profile}).status_code == 200
    assert hosts == ["cvec.test", "upstream.test", "upstream.test"]


def test_audit_replies_go_where_the_plan_is_served() -> None:
    from causalguard.runtime.engine_levers import EngineRequest
    from causalguard.runtime.upstream_replies import upstream_completer

    seen: list[tuple[str, dict[str, Any]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, json.loads(request.content)))
        message = {"role": "assistant", "content": " hi "}
        return httpx.Response(200, json={"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})

    spec = UpstreamSpec(base_url="http://upstream.test/v1", model="up-model")
    complete = upstream_completer(spec, transport=httpx.MockTransport(handler))
    messages = [{"role": "user", "content": "Hi"}]
    assert complete(messages, 5, EngineRequest(CVEC_URL, {"lora": [{"id": 0, "scale": 0.5}]})) == " hi "
    complete(messages, 5, EngineRequest())
    assert [host for host, _ in seen] == ["cvec.test", "upstream.test"]
    assert seen[0][1]["lora"] == [{"id": 0, "scale": 0.5}] and "lora" not in seen[1][1]
    assert seen[0][1]["model"] == "up-model" and seen[0][1]["temperature"] == 0.0


def test_an_adapter_served_by_model_name_is_planned_and_named(tmp_path: Path) -> None:
    """vLLM picks an adapter by the request's model name (--lora-modules NAME=FOLDER)."""
    from causalguard.runtime.engine_levers import engine_request

    path = tmp_path / "guard.yaml"
    proxy = PROXY.replace("targets:\n  power: {direction: decrease}\nmethod: adapter\n", "")  # default: unguarded
    path.write_text(proxy.replace("  lora_adapters:\n", f"  lora_models:\n    '{KIND.id}': kind-adapter\n"))
    sourced = read_guard_config(path)
    state = build_guard_state(sourced, _adapter_bundle(), sae=None, local_model=False)
    assert [lever.id for lever in state.plan("kind").levers] == [KIND.id]
    assert engine_request(state.plan("kind"), sourced.config.upstream).body == {"model": "kind-adapter"}
    assert engine_request(state.plan("plain"), sourced.config.upstream).body == {}
    assert state.plan("kind").reasons[-1].endswith("(the upstream's adapter model 'kind-adapter')")
    path.write_text(proxy.replace("  lora_adapters:\n", f"  lora_models:\n    '{CALM.id}': calm-adapter\n"))
    with pytest.raises(ConfigError, match=r"at scale 0\.5; a server that picks adapters by model name"):
        build_guard_state(read_guard_config(path), _adapter_bundle(), sae=None, local_model=False)
