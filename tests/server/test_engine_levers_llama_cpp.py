"""Exported levers on the real C++ llama-server (built by scripts/install-llama-cpp-server.sh): a GGUF LoRA
adapter written by ``levers export`` changes the engine's next-token distribution exactly as the same PEFT
adapter changes the in-process model (so the query/key permutation is right), the shipped stimulation
vector loads as a control vector and changes greedy replies, and the guard in proxy mode, driven by the
``openai`` client, sends each profile's adapter scales per request: two profiles served concurrently get
their own adapters, the plain profile none."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from causalguard.graphs.levers.export import export_levers, read_engine_model, write_gguf_lora
from causalguard.models.loaded import LoadedModel
from causalguard.models.registry import EMBEDDED_MODELS
from causalguard.server.process import free_port
from tests.repo_paths import ROOT

pytestmark = pytest.mark.slow
SHIPPED = ROOT / "graphs/causalguard/graphs/smollm2-135m-instruct"
SERVER = Path(os.environ.get("CAUSALGUARD_LLAMA_SERVER", ROOT / ".venv/bin/llama-server"))
SYSTEM = "You are a helpful assistant."
QUESTION = "What should I do this weekend?"


def _need_server() -> None:
    if not SERVER.is_file():
        if os.environ.get("CAUSALGUARD_REQUIRE_LLAMA_CPP"):
            pytest.fail(f"{SERVER} is required here: run scripts/install-llama-cpp-server.sh")
        pytest.skip(f"no C++ llama-server at {SERVER} (scripts/install-llama-cpp-server.sh builds it)")


class LlamaServer:
    """``llama-server`` on a free loopback port, with extra flags; stopped on exit."""

    def __init__(self, folder: Path, *flags: str) -> None:
        _need_server()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        gguf = EMBEDDED_MODELS["smollm2-135m-instruct"].locate_gguf()
        self.log = folder / f"llama-{self.port}.log"
        command = [str(SERVER), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["-c", "2048", "-np", "2", "-t", "2", *flags]
        self.process = subprocess.Popen(command, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)

    def __enter__(self) -> LlamaServer:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise AssertionError(self.log.read_text()[-3000:])
            time.sleep(0.3)
        raise AssertionError("llama-server not up after 120 s")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(30)

    def chat(self, lora: list[dict[str, Any]] | None = None, max_tokens: int = 24) -> str:
        body: dict[str, Any] = {
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        if lora is not None:
            body["lora"] = lora
        reply = httpx.post(f"{self.url}/v1/chat/completions", json=body, timeout=120)
        reply.raise_for_status()
        return str(reply.json()["choices"][0]["message"]["content"])

    def first_token_probs(self, prompt: list[int], lora: list[dict[str, Any]] | None = None) -> dict[int, float]:
        body: dict[str, Any] = {
            "prompt": prompt,
            "n_predict": 1,
            "n_probs": 10,
            "temperature": 0,
            "post_sampling_probs": False,
        }
        if lora is not None:
            body["lora"] = lora
        reply = httpx.post(f"{self.url}/completion", json=body, timeout=120)
        reply.raise_for_status()
        top = reply.json()["completion_probabilities"][0]["top_logprobs"]
        return {int(t["id"]): float(np.exp(t["logprob"])) for t in top}


def _random_adapter(lm: LoadedModel, folder: Path, seed: int) -> Path:
    """A real PEFT LoRA adapter on the embedded model's attention projections, strong enough to change
    what it says, saved by peft."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    modules = ["q_proj", "k_proj", "v_proj", "o_proj"]
    config = LoraConfig(r=4, lora_alpha=8, target_modules=modules, layers_to_transform=[2, 3, 4, 5])
    model = get_peft_model(copy.deepcopy(lm.model), config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.4)
    model.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def adapters(lm: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two adapters as PEFT folders and, beside them, as llama.cpp GGUF adapters (``<folder>.gguf``)."""
    _need_server()
    folder = tmp_path_factory.mktemp("adapters")
    engine = read_engine_model(EMBEDDED_MODELS["smollm2-135m-instruct"].locate_gguf())
    out = []
    for seed, name in ((5, "first"), (6, "second")):
        peft = _random_adapter(lm, folder / name, seed)
        write_gguf_lora(peft, folder / f"{name}.gguf", engine)
        out.append(peft)
    return out


@pytest.mark.heavy
def test_an_exported_adapter_changes_the_engine_as_it_changes_the_model_in_process(
    lm: LoadedModel, adapters: list[Path], tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel

    from causalguard.runtime.generation import chat_prompt_ids

    prompt = chat_prompt_ids(lm, [{"role": "user", "content": QUESTION}], SYSTEM, [])
    peft = PeftModel.from_pretrained(lm.model, str(adapters[0])).eval()
    with torch.inference_mode():
        with peft.disable_adapter():
            plain = torch.softmax(peft(input_ids=torch.tensor([prompt])).logits[0, -1].float(), -1)
        steered = torch.softmax(peft(input_ids=torch.tensor([prompt])).logits[0, -1].float(), -1)
    peft.unload()
    engine = read_engine_model(EMBEDDED_MODELS["smollm2-135m-instruct"].locate_gguf())
    unpermuted = tmp_path / "unpermuted.gguf"  # the same adapter without the query/key permutation: wrong
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("causalguard.graphs.levers.export.permute_for_llama_cpp", lambda weight, heads: weight)
        write_gguf_lora(adapters[0], unpermuted, engine)
    error = {}
    for name, gguf in (("exported", f"{adapters[0]}.gguf"), ("unpermuted", str(unpermuted))):
        with LlamaServer(tmp_path, "--lora", gguf, "--lora-init-without-apply") as server:
            engine_plain = server.first_token_probs(prompt, [{"id": 0, "scale": 0.0}])
            engine_steered = server.first_token_probs(prompt, [{"id": 0, "scale": 1.0}])
        error[name] = max(abs(p - float(steered[token])) for token, p in engine_steered.items())
        # Q4_1 kernels against float32: a small error on the unsteered model
        assert max(abs(p - float(plain[token])) for token, p in engine_plain.items()) < 0.03
    changed = max(abs(float(steered[t]) - float(plain[t])) for t in engine_steered)
    assert changed > 0.04  # the adapter moves the first token's distribution
    assert error["exported"] < 0.04, error  # the engine moves it as the model in-process does
    assert error["unpermuted"] > 2 * error["exported"], error  # the permutation is what makes it match


@pytest.mark.heavy
def test_the_exported_stimulation_vector_loads_as_a_control_vector(tmp_path: Path) -> None:
    gguf = EMBEDDED_MODELS["smollm2-135m-instruct"].locate_gguf()
    (item,) = export_levers(
        SHIPPED, "llama-cpp-cvec", tmp_path / "cvec", engine_model=gguf, lever_ids=["vector:stimulation:+:L21:0.15"]
    )
    with LlamaServer(tmp_path) as plain_server:
        plain = plain_server.chat(max_tokens=40)
    with LlamaServer(tmp_path, "--control-vector-scaled", f"{item.path}:1.0") as steered_server:
        steered = steered_server.chat(max_tokens=40)
    assert plain and steered and plain != steered
    assert "control" in steered_server.log.read_text().lower() or steered != plain


@pytest.mark.heavy
def test_two_profiles_get_their_own_adapters_through_the_proxy(
    tiny_lm: LoadedModel, adapters: list[Path], tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient
    from openai import OpenAI

    from causalguard.config.loading import SourcedConfig
    from causalguard.metrics import GuardMetrics
    from causalguard.runtime.value_guard import ValueGuard
    from causalguard.server.app import create_app
    from tests.runtime.test_engine_levers import CALM, KIND, PROXY, _adapter_bundle

    flags = ["--lora", f"{adapters[0]}.gguf", "--lora", f"{adapters[1]}.gguf"]
    with LlamaServer(tmp_path, *flags) as server:
        config = (
            PROXY.replace("http://upstream.test/v1", f"{server.url}/v1") + f"    - '{CALM.id}'\n    - '{KIND.id}'\n"
        )
        config = config.replace("system_prompt: Be brief.", f"system_prompt: {SYSTEM}")
        path = tmp_path / "guard.yaml"
        path.write_text(config)

        def factory(sourced: SourcedConfig, metrics: GuardMetrics) -> ValueGuard:
            return ValueGuard(tiny_lm.model, tiny_lm.tokenizer, sourced, bundle=_adapter_bundle(), metrics=metrics)

        with TestClient(create_app(path, guard_factory=factory)) as http:
            deadline = time.monotonic() + 60
            while http.get("/readyz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            client = OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=http)
            replies: dict[str, str] = {}

            def ask(profile: str) -> None:
                completion = client.chat.completions.create(
                    model=f"tiny-llama:{profile}",
                    messages=[{"role": "user", "content": QUESTION}],
                    max_tokens=24,
                    temperature=0,
                )
                replies[profile] = completion.choices[0].message.content or ""

            threads = [threading.Thread(target=ask, args=(p,)) for p in ("default", "kind", "plain")]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
        # the engine itself, asked directly with each profile's scales, says the same
        assert replies["default"] == server.chat([{"id": 0, "scale": 0.5}, {"id": 1, "scale": 0.0}])
        assert replies["kind"] == server.chat([{"id": 0, "scale": 0.0}, {"id": 1, "scale": 1.0}])
        assert replies["plain"] == server.chat([{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.0}])
        assert len({replies["default"], replies["kind"], replies["plain"]}) == 3, json.dumps(replies)


@pytest.mark.heavy
def test_the_shipped_default_profile_is_served_by_a_control_vector_upstream(lm: LoadedModel, tmp_path: Path) -> None:
    """The README's default profile (stimulation up, the steering vector) in proxy mode: planned because an
    upstream runs the exported control vector, and served by it; the plain profile by the main upstream."""
    from fastapi.testclient import TestClient

    from causalguard.config.loading import SourcedConfig
    from causalguard.metrics import GuardMetrics
    from causalguard.runtime.value_guard import ValueGuard
    from causalguard.server.app import create_app

    gguf = EMBEDDED_MODELS["smollm2-135m-instruct"].locate_gguf()
    # the lever the planner picks for stimulation up: the all-token vector, which llama.cpp applies as measured
    (item,) = export_levers(
        SHIPPED, "llama-cpp-cvec", tmp_path / "cvec", engine_model=gguf, lever_ids=["vector:stimulation:+:L21:0.15:all"]
    )
    with LlamaServer(tmp_path) as main, LlamaServer(tmp_path, "--control-vector-scaled", f"{item.path}:1.0") as cvec:
        config = (ROOT / "docs/examples/stimulation-vector.yaml").read_text()
        config += f"profiles:\n  plain: {{}}\nupstream:\n  base_url: {main.url}/v1\n  model: smollm2\n"
        config += f"  control_vectors:\n    '{item.lever_id}': {cvec.url}/v1\n"
        path = tmp_path / "guard.yaml"
        path.write_text(config)

        def factory(sourced: SourcedConfig, metrics: GuardMetrics) -> ValueGuard:
            return ValueGuard(lm.model, lm.tokenizer, sourced, metrics=metrics, start_audits=False)

        with TestClient(create_app(path, guard_factory=factory)) as http:
            deadline = time.monotonic() + 120
            while http.get("/readyz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            guard = http.app.state.guard_server.guard  # type: ignore[attr-defined]
            assert [lever.id for lever in guard.plan("default").levers] == [item.lever_id]
            replies = {}
            for profile in ("default", "plain"):
                body = {
                    "model": f"smollm2-135m-instruct:{profile}",
                    "max_tokens": 24,
                    "temperature": 0,
                    "messages": [{"role": "user", "content": QUESTION}],
                }
                replies[profile] = http.post("/v1/chat/completions", json=body).json()["choices"][0]["message"][
                    "content"
                ]
        assert replies["default"] == cvec.chat()
        assert replies["plain"] == main.chat()
        assert replies["default"] != replies["plain"]
