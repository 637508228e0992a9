"""Export a bundle's levers to the engines operators serve with.

Three formats, each file with a JSON sidecar (``<name>.lever.json``: the lever, the model it was measured
on, the engine flag that loads it and the effect it should reproduce):

- ``llama-cpp-cvec``: a vector lever as a llama.cpp control vector (GGUF, architecture ``controlvector``,
  one tensor ``direction.N`` per layer, as ``repeng`` writes them). llama.cpp adds ``direction.N`` to the
  output of decoder block N, counted from 0 like ``model.layers[N]``; block 0 cannot be steered. A control
  vector is set per server process (``--control-vector-scaled FILE SCALE``), and it acts on every token,
  the prompt's included, where causalguard's vector levers act on generated tokens only.
- ``peft``: a value adapter as a PEFT LoRA folder (``adapter_config.json`` + ``adapter_model.safetensors``),
  which ``peft``, vLLM (``--lora-modules``) and llama.cpp's ``convert_lora_to_gguf.py`` read.
- ``gguf-lora``: a value adapter as a llama.cpp LoRA adapter (GGUF, ``general.type = adapter``), loaded
  with ``llama-server --lora FILE`` and scaled per request (``"lora": [{"id": 0, "scale": 1.0}]``). The
  query and key projections are permuted the way llama.cpp's converter permutes the model's own weights.

Only levers the catalog calls usable are exported unless levers are named.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from causalguard.bundle.catalog import Catalog, LeverEntry
from causalguard.bundle.format import load_bundle
from causalguard.errors import ConfigError

ExportFormat = Literal["llama-cpp-cvec", "peft", "gguf-lora"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("llama-cpp-cvec", "peft", "gguf-lora")
SIDECAR_SCHEMA = "causalguard.exported_lever/1"
# Hugging Face Llama module names -> llama.cpp tensor names (blk.N.<name>.weight)
LLAMA_CPP_TENSORS = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_MODULE = re.compile(r"^model\.layers\.(\d+)\.([a-z_]+\.[a-z_]+)$")


@dataclass(frozen=True)
class EngineModel:
    """What an engine's GGUF model file says about its shapes (read from the metadata, not the weights)."""

    path: Path
    architecture: str
    layers: int
    hidden_size: int
    heads: int
    kv_heads: int
    tensors: Mapping[str, tuple[int, ...]]  # name -> shape in torch order (out, in)


@dataclass(frozen=True)
class ExportedLever:
    """One exported lever: its file (or folder), its sidecar and the engine flag that loads it (with the
    file's path as written)."""

    lever_id: str
    path: Path
    sidecar: Path
    launch_flag: str


def read_engine_model(path: Path) -> EngineModel:
    """The architecture, sizes and tensor shapes of a GGUF model file (metadata only)."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError.single(
            str(path), f"not a readable GGUF model ({exc})", hint="give the .gguf the engine serves"
        ) from None
    fields = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("tokenizer.")}
    arch = fields.get("general.architecture")
    if not isinstance(arch, str):
        raise ConfigError.single(str(path), "no general.architecture", field="general.architecture")

    def number(key: str) -> int:
        value = fields.get(f"{arch}.{key}")
        if not isinstance(value, int) or value <= 0:
            raise ConfigError.single(str(path), f"expected a positive integer, got {value!r}", field=f"{arch}.{key}")
        return value

    shapes = {t.name: tuple(int(n) for n in reversed(t.shape.tolist())) for t in reader.tensors}
    return EngineModel(
        path,
        arch,
        number("block_count"),
        number("embedding_length"),
        number("attention.head_count"),
        number("attention.head_count_kv"),
        shapes,
    )


def write_control_vector(path: Path, directions: Mapping[int, np.ndarray], model_hint: str) -> None:
    """Write a llama.cpp control vector: ``directions[N]`` is added to block N's output (N >= 1)."""
    from gguf import GGUFWriter

    if any(layer < 1 for layer in directions):
        raise ValueError("llama.cpp cannot steer block 0's output: its control vectors start at direction.1")
    writer = GGUFWriter(str(path), "controlvector")
    writer.add_string("controlvector.model_hint", model_hint)
    writer.add_uint32("controlvector.layer_count", len(directions))
    for layer, vector in sorted(directions.items()):
        writer.add_tensor(f"direction.{layer}", np.ascontiguousarray(vector, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def permute_for_llama_cpp(weight: np.ndarray, heads: int) -> np.ndarray:
    """Rows of a query or key projection in llama.cpp's rotary layout (``convert_hf_to_gguf``'s
    ``LlamaModel.permute``): per head, the two rotary halves interleaved."""
    out = weight.shape[0]
    return weight.reshape(heads, 2, out // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def write_gguf_lora(adapter_folder: Path, path: Path, engine: EngineModel) -> None:
    """Convert a PEFT LoRA folder (plain LoRA on Llama linear modules) into a llama.cpp LoRA adapter."""
    from gguf import GGUFWriter
    from safetensors.numpy import load_file

    config = json.loads((adapter_folder / "adapter_config.json").read_text(encoding="utf-8"))
    tensors = load_file(str(adapter_folder / "adapter_model.safetensors"))
    halves: dict[str, dict[str, np.ndarray]] = {}
    for key, tensor in tensors.items():
        module, part = key.removeprefix("base_model.model.").rsplit(".lora_", 1)
        halves.setdefault(module, {})[part[0]] = tensor.astype(np.float32)
    writer = GGUFWriter(str(path), engine.architecture)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(config["lora_alpha"]))
    for module, parts in sorted(halves.items()):
        match = _MODULE.match(module)
        if match is None or match.group(2) not in LLAMA_CPP_TENSORS:
            raise ConfigError.single(
                str(adapter_folder / "adapter_model.safetensors"),
                "no llama.cpp tensor for this module",
                field=module,
                hint=f"adapters on {', '.join(LLAMA_CPP_TENSORS)} convert",
            )
        base = f"blk.{match.group(1)}.{LLAMA_CPP_TENSORS[match.group(2)]}.weight"
        down, up = parts["A"], parts["B"]
        if engine.tensors.get(base) != (up.shape[0], down.shape[1]):
            raise ConfigError.single(
                str(engine.path),
                f"{base} is {engine.tensors.get(base)}, the adapter's {module} is {(up.shape[0], down.shape[1])}",
                field=base,
                hint="export for the model the adapter was trained on",
            )
        if match.group(2) == "self_attn.q_proj":
            up = permute_for_llama_cpp(up, engine.heads)
        elif match.group(2) == "self_attn.k_proj":
            up = permute_for_llama_cpp(up, engine.kv_heads)
        writer.add_tensor(f"{base}.lora_a", np.ascontiguousarray(down))
        writer.add_tensor(f"{base}.lora_b", np.ascontiguousarray(up))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _measured(lever: LeverEntry) -> dict[str, Any] | None:
    """The reply effect on the lever's own target the export should reproduce (held-out where tested)."""
    replies = lever.replies
    if replies is None or lever.target is None:
        return None
    effect = replies.effects.get(lever.target)
    out: dict[str, Any] = {"verdict": replies.verdict, "units": "reply judge"}
    if effect is not None:
        out["dev"] = effect.model_dump()
    if replies.held_out is not None:
        out["held_out"] = replies.held_out.model_dump()
    return out


def chosen_levers(catalog: Catalog, kind: str, lever_ids: Sequence[str]) -> list[LeverEntry]:
    """The named levers (each must exist and be of ``kind``), or every usable lever of ``kind``."""
    if lever_ids:
        out = []
        for lever_id in lever_ids:
            try:
                lever = catalog.lever(lever_id)
            except KeyError:
                raise ConfigError.single("--lever", f"no lever {lever_id!r} in the catalog") from None
            if lever.kind != kind:
                raise ConfigError.single("--lever", f"{lever_id} is a {lever.kind} lever; this format exports {kind}")
            out.append(lever)
        return out
    return [
        lever
        for lever in catalog.levers
        if lever.kind == kind and lever.replies is not None and lever.replies.verdict == "usable"
    ]


def _name(lever_id: str) -> str:
    """A file name for a lever id: ``vector:stimulation:+:L21:0.15`` -> ``vector_stimulation_up_L21_0.15``."""
    spelled = lever_id.replace(":+:", ":up:").replace(":-:", ":down:")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", spelled).strip("_")


def export_levers(
    bundle_dir: Path, fmt: ExportFormat, out_dir: Path, *, engine_model: Path, lever_ids: Sequence[str] = ()
) -> list[ExportedLever]:
    """Write ``bundle_dir``'s vector levers (``llama-cpp-cvec``) or value adapters (``peft``, ``gguf-lora``)
    into ``out_dir``, each with its sidecar. ``engine_model`` is the GGUF the engine serves; its shapes are
    checked against every exported tensor."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError.single("--format", f"unknown format {fmt!r}", hint=f"one of {', '.join(EXPORT_FORMATS)}")
    bundle = load_bundle(bundle_dir)
    if bundle.catalog is None:
        raise ConfigError.single(str(bundle_dir), "no catalog.json", hint="measure levers first")
    engine = read_engine_model(engine_model)
    kind = "vector" if fmt == "llama-cpp-cvec" else "adapter"
    levers = chosen_levers(bundle.catalog, kind, lever_ids)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = bundle.doc["model"]
    common = {
        "schema": SIDECAR_SCHEMA,
        "format": fmt,
        "model": model["name"],
        "model_fingerprint": model["fingerprint"],
        "engine_model": {"file": engine.path.name, "sha256": _file_sha256(engine.path)},
    }
    exported = []
    for lever in levers:
        name = _name(lever.id)
        if fmt == "llama-cpp-cvec":
            path, flag, extra = _export_vector(bundle_dir, bundle.doc, lever, engine, out_dir / f"{name}.gguf")
        else:
            path, flag, extra = _export_adapter(bundle_dir, lever, engine, out_dir, name, fmt)
        sidecar = out_dir / f"{name}.lever.json"
        doc = {
            **common,
            "lever": lever.id,
            "kind": lever.kind,
            "target": lever.target,
            "direction": lever.direction,
            **extra,
            "launch_flag": flag,
            "measured": _measured(lever),
        }
        sidecar.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        exported.append(ExportedLever(lever.id, path, sidecar, flag))
    return exported


def _export_vector(
    bundle_dir: Path, bundle_doc: dict[str, Any], lever: LeverEntry, engine: EngineModel, path: Path
) -> tuple[Path, str, dict[str, Any]]:
    from causalguard.adapters.hf.vectors import load_vectors

    vectors = load_vectors(
        bundle_dir / "vectors",
        hidden_size=engine.hidden_size,
        num_layers=engine.layers,
        fingerprint=bundle_doc["model"]["fingerprint"],
    )
    if lever.target is None or lever.strength is None:
        raise ConfigError.single(
            str(bundle_dir / "catalog.json"), "a vector lever without target or strength", field=lever.id
        )
    intervention = vectors.intervention(lever.vector_key, lever.strength)
    if intervention.layer < 1:
        raise ConfigError.single(
            "--lever", f"{lever.id} steers block 0, which llama.cpp's control vectors cannot reach"
        )
    write_control_vector(path, {intervention.layer: intervention.delta_vector.numpy()}, engine.architecture)
    in_process = "all tokens, as measured" if lever.vector_tokens == "all" else "in-process: generated tokens"
    extra = {"layers": [intervention.layer], "scale": 1.0, "scope": f"all tokens ({in_process})"}
    return path, f"--control-vector-scaled {path}:1.0", extra


def _export_adapter(
    bundle_dir: Path, lever: LeverEntry, engine: EngineModel, out_dir: Path, name: str, fmt: ExportFormat
) -> tuple[Path, str, dict[str, Any]]:
    if lever.adapter is None:
        raise ConfigError.single(
            str(bundle_dir / "catalog.json"), "an adapter lever without its folder", field=lever.id
        )
    folder = bundle_dir / "adapters" / lever.adapter
    scale = float(lever.strength) if lever.strength is not None else 1.0
    extra = {"adapter": lever.adapter, "scale": scale}
    if fmt == "peft":
        target = out_dir / name
        shutil.copytree(folder, target, dirs_exist_ok=True)
        return target, f"--lora-modules {name}={target}", extra
    path = out_dir / f"{name}.gguf"
    write_gguf_lora(folder, path, engine)
    return path, f"--lora {path}", extra
