"""What exported levers cost on llama.cpp's C++ server: decode tokens/s with a LoRA adapter at scale 1
against the same server at scale 0 and a server without adapters, and with a control vector against
none.

    .venv/bin/python benchmarks/bench_engine_levers.py [--rounds 8] [--tokens 64]

Starts three ``llama-server`` processes on the embedded SmolLM2 GGUF (scripts/install-llama-cpp-server.sh
builds it), one at a time on the machine's cores: plain; with a rank-8 LoRA adapter on the modules
``levers adapters`` trains (random weights: the cost does not depend on the values), loaded with
``--lora-init-without-apply`` and scaled per request; with the shipped stimulation vector exported as a
control vector. Each request decodes exactly ``--tokens`` tokens (``ignore_eos``) from a new prompt; the
decode rate is the server's own (``timings.predicted_per_second``). Arms alternate request by request, so
drift hits all alike. Prints medians and ratios to the plain server's rate in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from _timing import machine
from safetensors.numpy import save_file

from causalguard.graphs.levers.adapters import TARGET_MODULES
from causalguard.graphs.levers.export import LLAMA_CPP_TENSORS, export_levers, read_engine_model, write_gguf_lora
from causalguard.models.registry import EMBEDDED_MODELS
from causalguard.server.process import free_port

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / ".venv/bin/llama-server"
SHIPPED = ROOT / "graphs/causalguard/graphs/smollm2-135m-instruct"


def _adapter(folder: Path, gguf: Path) -> Path:
    """A rank-8 PEFT folder on TARGET_MODULES of every block, shapes from the engine's GGUF, as GGUF."""
    engine = read_engine_model(gguf)
    rng = np.random.default_rng(0)
    tensors = {}
    for layer in range(engine.layers):
        for module in TARGET_MODULES:
            path = next(p for p in LLAMA_CPP_TENSORS if p.endswith(f".{module}"))  # e.g. self_attn.q_proj
            out_features, in_features = engine.tensors[f"blk.{layer}.{LLAMA_CPP_TENSORS[path]}.weight"]
            name = f"base_model.model.model.layers.{layer}.{path}"
            tensors[f"{name}.lora_A.weight"] = rng.normal(0, 0.01, (8, in_features)).astype(np.float32)
            tensors[f"{name}.lora_B.weight"] = rng.normal(0, 0.01, (out_features, 8)).astype(np.float32)
    peft = folder / "adapter"
    peft.mkdir()
    save_file(tensors, str(peft / "adapter_model.safetensors"))
    (peft / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 16}))
    write_gguf_lora(peft, folder / "adapter.gguf", engine)
    return folder / "adapter.gguf"


def _start(gguf: Path, log: Path, *flags: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [str(SERVER), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port), "-c", "2048", "-np", "1"]
    process = subprocess.Popen([*command, *flags], stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"llama-server did not start: {log.read_text()[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    if not SERVER.is_file():
        raise SystemExit(f"no {SERVER}: run scripts/install-llama-cpp-server.sh")
    gguf = EMBEDDED_MODELS["smollm2-135m-instruct"].locate_gguf()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        adapter = _adapter(folder, gguf)
        (cvec,) = export_levers(SHIPPED, "llama-cpp-cvec", folder / "cvec", engine_model=gguf)
        servers = {
            "plain": _start(gguf, folder / "plain.log"),
            "lora": _start(gguf, folder / "lora.log", "--lora", str(adapter), "--lora-init-without-apply"),
            "cvec": _start(gguf, folder / "cvec.log", "--control-vector-scaled", f"{cvec.path}:1.0"),
        }
        arms = {
            "plain server": ("plain", None),
            "adapter loaded, scale 0": ("lora", [{"id": 0, "scale": 0.0}]),
            "adapter at scale 1": ("lora", [{"id": 0, "scale": 1.0}]),
            "control vector": ("cvec", None),
        }
        rates: dict[str, list[float]] = {name: [] for name in arms}
        try:
            with httpx.Client(timeout=300) as client:
                for round_ in range(args.rounds + 1):  # round 0 warms every server up and is not counted
                    for name, (server, lora) in arms.items():
                        body: dict[str, object] = {
                            "prompt": f"Write about the number {round_ * 10 + len(name)}.",
                            "n_predict": args.tokens,
                            "ignore_eos": True,
                            "temperature": 0,
                            "cache_prompt": False,
                        }
                        if lora is not None:
                            body["lora"] = lora
                        doc = client.post(f"{servers[server][1]}/completion", json=body).json()
                        if round_ > 0:
                            rates[name].append(float(doc["timings"]["predicted_per_second"]))
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(30)
    print(f"machine: {machine()}; llama-server {args.tokens} decoded tokens x {args.rounds} rounds, one at a time")
    base = statistics.median(rates["plain server"])
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"  {name:26s} {rate:7.1f} tokens/s (median)   {rate / base:5.2f}x the plain server")


if __name__ == "__main__":
    sys.exit(main())
