"""A cheap, content-sensitive fingerprint of a model's weights."""

from __future__ import annotations

import hashlib
from typing import Any

FINGERPRINT_VERSION = "w1"
SAMPLES_PER_TENSOR = 4096


def weights_fingerprint(model: Any) -> str:
    """SHA-256 over every parameter's name, shape and an evenly strided sample of its values.

    Equal for the same weights however they were loaded (GGUF, cached safetensors copy), different
    when any tensor changes shape or, in all practical cases, values. Takes milliseconds, even for
    billion-parameter models, because it samples at most 4,096 values per tensor.
    """
    import torch

    digest = hashlib.sha256(FINGERPRINT_VERSION.encode())
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // SAMPLES_PER_TENSOR)
            sample = flat[::step][:SAMPLES_PER_TENSOR].to(torch.float32).cpu().contiguous()
            digest.update(f"{name}:{tuple(tensor.shape)}:".encode())
            digest.update(sample.numpy().tobytes())
    return f"{FINGERPRINT_VERSION}:{digest.hexdigest()[:32]}"


def file_sha256(path: Any, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
