"""Load a model by registry name, local folder, GGUF file or HF model id.

GGUF files are dequantised once and the result is cached as safetensors under the user cache dir,
keyed by the GGUF file's SHA-256; later loads read the cache (about a second instead of ~25 s).
A cache whose files fail to load, or whose weights no longer match the recorded fingerprint, is
rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from causalguard.errors import ModelNotAvailableError
from causalguard.models.fingerprint import file_sha256, weights_fingerprint
from causalguard.models.loaded import LoadedModel
from causalguard.models.registry import DEFAULT_MODEL, EMBEDDED_MODELS
from causalguard.paths import cache_root
from causalguard.values.inventory import unknown_name_message

log = logging.getLogger(__name__)

CACHE_MARKER = "causalguard-cache.json"
DTYPES = ("float32", "bfloat16", "float16")


def load_model(source: str | Path = DEFAULT_MODEL, *, dtype: str = "float32", use_cache: bool = True) -> LoadedModel:
    """Load ``source``: a registry name (``causalguard models``), a folder, a ``.gguf`` file or an HF id."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    text = str(source)
    path = Path(text).expanduser()
    if text in EMBEDDED_MODELS:
        gguf = EMBEDDED_MODELS[text].locate_gguf()
        model, tokenizer = _load_gguf(gguf, slug=text, dtype=dtype, use_cache=use_cache)
        name, where = text, str(gguf)
    elif path.is_file() and path.suffix == ".gguf":
        model, tokenizer = _load_gguf(path, slug=path.stem.lower(), dtype=dtype, use_cache=use_cache)
        name, where = str(path), str(path)
    elif path.is_dir():
        model, tokenizer = _from_pretrained(path, dtype=dtype)
        name, where = str(path), str(path)
    elif text.startswith((".", "/", "~")) and not path.exists():
        raise ModelNotAvailableError(f"no such model folder or file: {path.resolve()}")
    elif "/" in text and not path.exists():
        model, tokenizer = _from_pretrained(text, dtype=dtype)
        name, where = text, text
    else:
        raise ModelNotAvailableError(
            unknown_name_message(text, list(EMBEDDED_MODELS), what="model")
            + "; or give a local model folder, a .gguf file, or an HF model id (org/name)"
        )
    model.eval()
    return LoadedModel(
        model=model, tokenizer=tokenizer, name=name, fingerprint=weights_fingerprint(model), source=where
    )


def _torch_dtype(dtype: str) -> Any:
    import torch

    return getattr(torch, dtype)


def _from_pretrained(where: str | Path, *, dtype: str, gguf_file: str | None = None) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=_torch_dtype(dtype), **kwargs)
    except OSError as exc:
        raise ModelNotAvailableError(
            f"could not load model from {where}: {exc}. Model hubs may be unreachable here: use a local "
            "folder or an embedded model (causalguard models)"
        ) from exc
    return model, tokenizer


def _load_gguf(gguf: Path, *, slug: str, dtype: str, use_cache: bool) -> tuple[Any, Any]:
    if not use_cache:
        return _from_pretrained(gguf.parent, dtype=dtype, gguf_file=gguf.name)
    sha = file_sha256(gguf)
    folder = cache_root() / "models" / f"{slug}-{sha[:16]}"
    cached = _read_cache(folder, sha, dtype)
    if cached is not None:
        return cached
    log.info("dequantising %s (first load of this file; cached afterwards)", gguf.name)
    model, tokenizer = _from_pretrained(gguf.parent, dtype="float32", gguf_file=gguf.name)
    _write_cache(folder, sha, model, tokenizer)
    if dtype != "float32":
        model = model.to(_torch_dtype(dtype))
    return model, tokenizer


def _read_cache(folder: Path, sha: str, dtype: str) -> tuple[Any, Any] | None:
    marker = folder / CACHE_MARKER
    if not marker.exists():
        return None
    try:
        recorded = json.loads(marker.read_text())
        if recorded.get("gguf_sha256") != sha:
            raise ValueError("cache belongs to another GGUF file")
        model, tokenizer = _from_pretrained(folder, dtype="float32")
        if weights_fingerprint(model) != recorded.get("fingerprint"):
            raise ValueError("weights do not match the recorded fingerprint")
    except Exception as exc:  # a corrupt cache of any kind is rebuilt, never fatal
        log.warning("model cache %s is unusable (%s); rebuilding it", folder, exc)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    if dtype != "float32":
        model = model.to(_torch_dtype(dtype))
    return model, tokenizer


def _write_cache(folder: Path, sha: str, model: Any, tokenizer: Any) -> None:
    """Save a dequantised copy atomically: write to a temporary folder, then rename it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    # transformers refuses to save a GGUF-loaded model while its quantizer is attached.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / CACHE_MARKER).write_text(
            json.dumps({"gguf_sha256": sha, "fingerprint": weights_fingerprint(model)}, indent=2)
        )
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError as exc:  # a read-only or full cache dir costs speed next time, nothing else
        log.warning("could not write model cache %s: %s", folder, exc)
        shutil.rmtree(tmp, ignore_errors=True)
