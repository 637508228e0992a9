"""Exporting levers for serving engines: the shipped stimulation vector as a llama.cpp control vector
(read back: the tensor llama.cpp adds after block N is the lever's delta at layer N), a PEFT LoRA folder as a
llama.cpp LoRA adapter (query and key rows permuted exactly as transformers un-permutes GGUF weights), and
refusals that name the file and field. The real llama-server loads these in tests/server/test_proxy_llama_cpp.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader
from safetensors.numpy import save_file
from typer.testing import CliRunner

from causalguard.cli import app
from causalguard.errors import CausalguardError, ConfigError
from causalguard.graphs.levers.export import (
    export_levers,
    permute_for_llama_cpp,
    read_engine_model,
    write_control_vector,
    write_gguf_lora,
)
from causalguard.models.loaded import LoadedModel
from causalguard.models.registry import EMBEDDED_MODELS
from tests.repo_paths import ROOT

SHIPPED = ROOT / "graphs/causalguard/graphs/smollm2-135m-instruct"
STIMULATION_UP = "vector:stimulation:+:L21:0.15"


@pytest.fixture(scope="module")
def engine_gguf() -> Path:
    return EMBEDDED_MODELS["smollm2-135m-instruct"].locate_gguf()


def _field(reader: GGUFReader, name: str) -> object:
    return reader.fields[name].contents()


def test_the_usable_vector_lever_becomes_a_control_vector_at_its_layer(engine_gguf: Path, tmp_path: Path) -> None:
    from causalguard.adapters.hf.vectors import load_vectors
    from causalguard.bundle.catalog import load_catalog

    catalog = load_catalog(SHIPPED)
    assert catalog is not None
    usable = [e.id for e in catalog.levers if e.kind == "vector" and e.replies and e.replies.verdict == "usable"]
    exported = export_levers(SHIPPED, "llama-cpp-cvec", tmp_path, engine_model=engine_gguf)
    assert [item.lever_id for item in exported] == usable and STIMULATION_UP in usable  # every usable vector
    by_id = {item.lever_id: item for item in exported}
    everywhere = json.loads(by_id[STIMULATION_UP + ":all"].sidecar.read_text())
    assert everywhere["scope"] == "all tokens (all tokens, as measured)"  # llama.cpp acts as it was measured
    item = by_id[STIMULATION_UP]
    assert item.path.name == "vector_stimulation_up_L21_0.15.gguf"
    reader = GGUFReader(str(item.path))
    assert _field(reader, "general.architecture") == "controlvector"
    assert _field(reader, "controlvector.model_hint") == "llama" and _field(reader, "controlvector.layer_count") == 1
    assert [t.name for t in reader.tensors] == ["direction.21"]
    vectors = load_vectors(SHIPPED / "vectors", hidden_size=576, num_layers=30)
    expected = vectors.intervention("stimulation", 0.15).delta_vector.numpy()
    assert np.allclose(np.asarray(reader.tensors[0].data), expected, atol=0)
    sidecar = json.loads(item.sidecar.read_text())
    assert sidecar["lever"] == STIMULATION_UP and sidecar["layers"] == [21] and sidecar["scale"] == 1.0
    assert sidecar["scope"] == "all tokens (in-process: generated tokens)"
    assert sidecar["measured"]["verdict"] == "usable" and sidecar["measured"]["held_out"]["passed"] is True
    assert sidecar["engine_model"]["file"] == engine_gguf.name and len(sidecar["engine_model"]["sha256"]) == 64
    assert item.launch_flag == f"--control-vector-scaled {item.path}:1.0"


def test_block_0_cannot_be_steered_by_a_control_vector(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="block 0"):
        write_control_vector(tmp_path / "x.gguf", {0: np.ones(4, dtype=np.float32)}, "llama")


def test_the_query_key_permutation_is_the_inverse_of_transformers_gguf_loader() -> None:
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    rng = np.random.default_rng(0)
    processor = LlamaTensorProcessor(config={"num_attention_heads": 9, "num_key_value_heads": 3})
    q, k = rng.normal(size=(576, 4)), rng.normal(size=(192, 4))
    assert np.array_equal(processor._reverse_permute_weights(permute_for_llama_cpp(q, 9), 9, 9), q)
    assert np.array_equal(processor._reverse_permute_weights(permute_for_llama_cpp(k, 3), 9, 3), k)
    assert not np.array_equal(permute_for_llama_cpp(q, 9), q)


def _peft_folder(folder: Path, modules: dict[str, tuple[int, int]], rank: int = 4) -> dict[str, np.ndarray]:
    """A PEFT LoRA folder (config + safetensors, as peft saves them) with random weights."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    tensors = {}
    for module, (out_features, in_features) in modules.items():
        tensors[f"base_model.model.{module}.lora_A.weight"] = rng.normal(size=(rank, in_features)).astype(np.float32)
        tensors[f"base_model.model.{module}.lora_B.weight"] = rng.normal(size=(out_features, rank)).astype(np.float32)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": 8, "target_modules": ["q_proj", "k_proj", "v_proj"]}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return tensors


def test_a_peft_folder_becomes_a_llama_cpp_lora_adapter(engine_gguf: Path, tmp_path: Path) -> None:
    modules = {
        "model.layers.3.self_attn.q_proj": (576, 576),
        "model.layers.3.self_attn.k_proj": (192, 576),
        "model.layers.3.self_attn.v_proj": (192, 576),
        "model.layers.3.mlp.down_proj": (576, 1536),
    }
    tensors = _peft_folder(tmp_path / "peft", modules)
    engine = read_engine_model(engine_gguf)
    assert (engine.architecture, engine.layers, engine.heads, engine.kv_heads) == ("llama", 30, 9, 3)
    out = tmp_path / "adapter.gguf"
    write_gguf_lora(tmp_path / "peft", out, engine)
    reader = GGUFReader(str(out))
    assert _field(reader, "general.type") == "adapter" and _field(reader, "adapter.type") == "lora"
    assert _field(reader, "general.architecture") == "llama" and _field(reader, "adapter.lora.alpha") == 8.0
    written = {t.name: np.asarray(t.data).reshape(tuple(reversed(t.shape.tolist()))) for t in reader.tensors}

    def pair(module: str) -> tuple[np.ndarray, np.ndarray]:
        prefix = f"base_model.model.{module}"
        return tensors[f"{prefix}.lora_A.weight"], tensors[f"{prefix}.lora_B.weight"]

    a, b = pair("model.layers.3.self_attn.q_proj")
    assert np.array_equal(written["blk.3.attn_q.weight.lora_a"], a)
    assert np.array_equal(written["blk.3.attn_q.weight.lora_b"], permute_for_llama_cpp(b, 9))
    _, b = pair("model.layers.3.self_attn.k_proj")
    assert np.array_equal(written["blk.3.attn_k.weight.lora_b"], permute_for_llama_cpp(b, 3))
    _, b = pair("model.layers.3.self_attn.v_proj")
    assert np.array_equal(written["blk.3.attn_v.weight.lora_b"], b)  # not a rotary projection: as trained
    assert written["blk.3.ffn_down.weight.lora_a"].shape == (4, 1536)


@pytest.mark.parametrize(
    ("modules", "field"),
    [
        ({"model.layers.0.self_attn.q_proj": (576, 100)}, "blk.0.attn_q.weight"),  # another model's shape
        ({"model.layers.0.self_attn.rotary": (576, 576)}, "model.layers.0.self_attn.rotary"),
        ({"model.layers.99.self_attn.q_proj": (576, 576)}, "blk.99.attn_q.weight"),
    ],
)
def test_an_adapter_that_does_not_fit_the_engine_model_is_refused(
    engine_gguf: Path, tmp_path: Path, modules: dict[str, tuple[int, int]], field: str
) -> None:
    _peft_folder(tmp_path / "peft", modules)
    with pytest.raises(ConfigError) as raised:
        write_gguf_lora(tmp_path / "peft", tmp_path / "x.gguf", read_engine_model(engine_gguf))
    assert raised.value.problems[0].field == field


def test_the_cli_exports_and_refuses_clearly(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(
        app, ["levers", "export", "--bundle", str(SHIPPED), "--format", "llama-cpp-cvec", "--out", str(tmp_path)]
    )
    assert ok.exit_code == 0, ok.output
    assert "launch: llama-server -m " in ok.output and "--control-vector-scaled" in ok.output
    for args, message in [
        (["--format", "onnx"], "unknown format"),
        (["--format", "gguf-lora"], "no usable adapter levers"),
        (["--format", "llama-cpp-cvec", "--lever", "role:power:-"], "is a role lever"),
        (["--format", "llama-cpp-cvec", "--lever", "vector:nope"], "no lever 'vector:nope'"),
        (["--format", "llama-cpp-cvec", "--engine-model", str(tmp_path / "none.gguf")], "is not a file"),
    ]:
        result = runner.invoke(app, ["levers", "export", "--bundle", str(SHIPPED), "--out", str(tmp_path / "o"), *args])
        # usage errors are printed by typer; a ConfigError is printed as one line by causalguard.cli.main
        flat = " ".join(result.output.replace("│", " ").split())
        error = result.exception if isinstance(result.exception, CausalguardError) else None
        assert result.exit_code != 0 and (message in flat or message in str(error)), (args, flat, result.exception)


@pytest.mark.slow
def test_an_exported_peft_adapter_reproduces_the_in_process_greedy_reply(
    lm: LoadedModel, engine_gguf: Path, tmp_path: Path
) -> None:
    """The ``peft`` export of an adapter lever, loaded by peft itself (as vLLM and Hugging Face load it),
    gives the greedy tokens the guard's per-row adapter hooks give; the ``gguf-lora`` export of the same
    lever is a llama.cpp adapter (loaded by the real server in tests/server/test_engine_levers_llama_cpp.py)."""
    import copy
    import shutil

    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    from causalguard.adapters.hf.value_adapters import (
        ADAPTER_CARD,
        ADAPTER_SCHEMA,
        install_adapter_hooks,
        load_value_adapter,
    )
    from causalguard.bundle.catalog import load_catalog, save_catalog
    from causalguard.bundle.integrity import seal_bundle
    from causalguard.bundle.lever import LeverSpec
    from causalguard.graphs.behaviour.report import with_reply_only_levers
    from causalguard.runtime.generation import GenerationRow, chat_prompt_ids, generate_rows

    bundle = tmp_path / "bundle"
    shutil.copytree(SHIPPED, bundle)
    folder = bundle / "adapters" / "benevolence-up"
    torch.manual_seed(2)
    model = get_peft_model(copy.deepcopy(lm.model), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    model.save_pretrained(str(folder))
    card = {"schema": ADAPTER_SCHEMA, "model_fingerprint": lm.fingerprint, "value": "benevolence", "direction": 1}
    (folder / ADAPTER_CARD).write_text(json.dumps(card))
    spec = LeverSpec.value_adapter("benevolence", 1, "benevolence-up", 1.0)
    catalog = load_catalog(bundle)
    assert catalog is not None
    save_catalog(with_reply_only_levers(catalog, [spec]), bundle)
    seal_bundle(bundle)

    (peft_export,) = export_levers(bundle, "peft", tmp_path / "peft", engine_model=engine_gguf, lever_ids=[spec.id])
    (gguf_export,) = export_levers(
        bundle, "gguf-lora", tmp_path / "gguf", engine_model=engine_gguf, lever_ids=[spec.id]
    )
    assert _field(GGUFReader(str(gguf_export.path)), "adapter.type") == "lora"
    assert json.loads(peft_export.sidecar.read_text())["adapter"] == "benevolence-up"

    prompt = chat_prompt_ids(
        lm, [{"role": "user", "content": "Any weekend ideas?"}], "You are a helpful assistant.", []
    )
    adapter = load_value_adapter(folder, lm.model, fingerprint=lm.fingerprint)
    with install_adapter_hooks(lm.model, [adapter]):
        hooked = generate_rows(lm, [GenerationRow(prompt, (adapter.intervention(1.0),))], max_new_tokens=16)[0].tokens
    plain = generate_rows(lm, [GenerationRow(prompt)], max_new_tokens=16)[0].tokens
    reference = PeftModel.from_pretrained(copy.deepcopy(lm.model), str(peft_export.path)).eval()
    with torch.inference_mode():
        out = reference.generate(input_ids=torch.tensor([prompt]), max_new_tokens=16, do_sample=False)
    peft_tokens = [t for t in out[0, len(prompt) :].tolist() if t != lm.tokenizer.eos_token_id]
    assert hooked != plain  # the adapter changes the reply
    assert peft_tokens == hooked
