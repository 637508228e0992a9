"""Loading models: the embedded GGUF models, any HF model id or local folder, with a fast local cache."""

from causalguard.models.loaded import LoadedModel
from causalguard.models.loading import load_model
from causalguard.models.registry import DEFAULT_MODEL, EMBEDDED_MODELS, EmbeddedModel

__all__ = ["DEFAULT_MODEL", "EMBEDDED_MODELS", "EmbeddedModel", "LoadedModel", "load_model"]
