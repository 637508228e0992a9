"""A loaded model with its tokenizer and identity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LoadedModel:
    """A causal LM ready for inference.

    ``name`` is the registry name or the path/id it was loaded from; ``fingerprint`` identifies the
    weights (see ``fingerprint.weights_fingerprint``), so results and bundles can be tied to them.
    """

    model: Any  # transformers.PreTrainedModel (kept Any: transformers is imported lazily)
    tokenizer: Any  # transformers.PreTrainedTokenizerBase
    name: str
    fingerprint: str
    source: str

    @property
    def num_layers(self) -> int:
        return int(self.model.config.get_text_config().num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.get_text_config().hidden_size)

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def pad_token_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.tokenizer.eos_token_id)
