"""The reply-level value judge: how strongly a text expresses each value, from one forward pass.

``ProbeJudge`` reads a judge model's residual stream at one layer over the reply's tokens (the reply
framed as ``Here is some advice:\\n"<reply>"``), mean-pools it, standardises it, and projects it on
one direction per value: the difference between the centroids of labelled replies that express the
value's high pole and its low pole (fitted on the labelled set's dev half; see
``causalguard.graphs.behaviour.judge_fit``). The score is scaled so that the high centroid scores +1
and the low centroid -1: "+0.3" reads as "30% of the way from the midpoint toward a clear high-pole
reply". Every value is scored from the same pass (about 0.1 s per reply on 2 CPU cores for SmolLM2),
which is what makes judging thousands of replies affordable.

The judge model runs unsteered: scoring happens under ``steer(None)``, so a guard's installed SAE hooks
stay idle even when the judge shares the guarded model. Artifacts are ``judge.json`` (settings,
fingerprint of the judge model) and ``judge.safetensors`` (mean, scale, directions, midpoints).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from causalguard.adapters.hf.hooks import decoder_layers, steer
from causalguard.artifacts import JUDGE_FILE, JUDGE_SCHEMA, JUDGE_WEIGHTS
from causalguard.errors import ConfigError
from causalguard.models.batching import left_padded
from causalguard.models.loaded import LoadedModel
from causalguard.models.prompting import encode_continuation, encode_prefix

FRAME_HEAD = 'Here is some advice:\n"'
FRAME_TAIL = '"'
MAX_REPLY_TOKENS = 256


class ValueJudge(Protocol):
    """Scores texts on every value: one row per text, one column per value, + for the high pole."""

    @property
    def dimensions(self) -> tuple[str, ...]: ...

    def score(self, texts: Sequence[str]) -> np.ndarray: ...


@contextmanager
def read_layers(model: Any, layers: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Record the hidden-state output of each decoder layer in ``layers`` for the block's forward passes
    (the last pass wins). Only passes run by the thread that entered the block are recorded, so a
    judge may score while the same model serves requests on other threads. The hooks are removed on
    exit, also on exceptions."""
    modules = decoder_layers(model)
    seen: dict[int, torch.Tensor] = {}
    handles = []
    owner = threading.get_ident()

    def make(layer: int) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            if threading.get_ident() != owner:
                return
            seen[layer] = (output[0] if isinstance(output, tuple) else output).detach()

        return hook

    try:
        for layer in layers:
            handles.append(modules[layer].register_forward_hook(make(layer)))
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def reply_features(lm: LoadedModel, texts: Sequence[str], layers: Sequence[int], *, batch_size: int = 16) -> np.ndarray:
    """Mean residual stream over each text's tokens in the judge frame: float32 [texts, layers, hidden]."""
    head = encode_prefix(lm.tokenizer, FRAME_HEAD)
    tail = encode_continuation(lm.tokenizer, FRAME_TAIL)
    bodies = [
        encode_continuation(lm.tokenizer, t)[:MAX_REPLY_TOKENS] or encode_continuation(lm.tokenizer, " ") for t in texts
    ]
    out = np.zeros((len(texts), len(layers), lm.hidden_size), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(bodies[i]))  # similar lengths share a batch
    with torch.inference_mode(), steer(None), read_layers(lm.model, layers) as seen:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            rows = [head + bodies[i] + tail for i in chunk]
            ids, mask = left_padded(rows, lm.pad_token_id)
            positions = (mask.cumsum(1) - 1).clamp(min=0)
            lm.model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1)
            width = ids.shape[1]
            for r, i in enumerate(chunk):
                end = width - len(tail)
                begin = end - len(bodies[i])
                for k, layer in enumerate(layers):
                    out[i, k] = seen[layer][r, begin:end].float().mean(0).numpy()
    return out


@dataclass(frozen=True)
class ProbeWeights:
    """A fitted probe: per hidden unit mean and scale, per value a direction and a midpoint."""

    dimensions: tuple[str, ...]
    layer: int
    mean: np.ndarray  # [hidden]
    scale: np.ndarray  # [hidden]
    directions: np.ndarray  # [values, hidden], in standardised units
    midpoints: np.ndarray  # [values, hidden]

    @classmethod
    def fit(
        cls,
        dimensions: Sequence[str],
        layer: int,
        features: np.ndarray,
        values: Sequence[str | None],
        poles: Sequence[str],
    ) -> ProbeWeights:
        """Fit from features [texts, hidden] of labelled texts (their value and pole)."""
        mean = features.mean(0)
        scale = features.std(0) + 1e-6
        z = (features - mean) / scale
        directions, midpoints = [], []
        for dim in dimensions:
            high = [i for i, (v, p) in enumerate(zip(values, poles, strict=True)) if v == dim and p == "high"]
            low = [i for i, (v, p) in enumerate(zip(values, poles, strict=True)) if v == dim and p == "low"]
            if not high or not low:
                raise ValueError(f"no labelled {'high' if not high else 'low'}-pole texts for value {dim!r}")
            h, lo = z[high].mean(0), z[low].mean(0)
            directions.append(h - lo)
            midpoints.append((h + lo) / 2)
        return cls(
            tuple(dimensions),
            layer,
            mean.astype(np.float32),
            scale.astype(np.float32),
            np.stack(directions).astype(np.float32),
            np.stack(midpoints).astype(np.float32),
        )

    def project(self, features: np.ndarray) -> np.ndarray:
        """Scores [texts, values] for features [texts, hidden] taken at ``self.layer``."""
        z = (features - self.mean) / self.scale
        norms = (self.directions**2).sum(1)
        return (
            np.einsum("nh,vh->nv", z, self.directions) * 2 / norms
            - 2 * (self.midpoints * self.directions).sum(1) / norms
        )


class ProbeJudge:
    """A ``ValueJudge`` from a judge model and fitted probe weights."""

    def __init__(self, lm: LoadedModel, weights: ProbeWeights, *, batch_size: int = 16) -> None:
        if weights.mean.shape[0] != lm.hidden_size:
            raise ValueError(f"probe fitted for hidden size {weights.mean.shape[0]}, model has {lm.hidden_size}")
        if not 0 <= weights.layer < lm.num_layers:
            raise ValueError(f"probe layer {weights.layer} is outside the model's {lm.num_layers} layers")
        self.lm = lm
        self.weights = weights
        self.batch_size = batch_size

    @property
    def dimensions(self) -> tuple[str, ...]:
        return self.weights.dimensions

    def score(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.dimensions)), dtype=np.float32)
        feats = reply_features(self.lm, texts, [self.weights.layer], batch_size=self.batch_size)[:, 0]
        return self.weights.project(feats)

    def save(self, folder: Path, meta: dict[str, Any]) -> None:
        from safetensors.numpy import save_file

        w = self.weights
        save_file(
            {"mean": w.mean, "scale": w.scale, "directions": w.directions, "midpoints": w.midpoints},
            str(folder / JUDGE_WEIGHTS),
            metadata={"dimensions": json.dumps(list(w.dimensions))},
        )
        doc = {
            "schema": JUDGE_SCHEMA,
            "kind": "probe",
            "model": {"name": self.lm.name, "fingerprint": self.lm.fingerprint},
            "layer": w.layer,
            "dimensions": list(w.dimensions),
            "frame": FRAME_HEAD + "{reply}" + FRAME_TAIL,
            **meta,
        }
        (folder / JUDGE_FILE).write_text(json.dumps(doc, indent=2) + "\n")


def _weight_dimensions(path: Path) -> list[str] | None:
    """The value order the judge weights were saved with (their safetensors metadata), or None."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        meta = handle.metadata() or {}
    if "dimensions" not in meta:
        return None
    rows = json.loads(meta["dimensions"])
    if not isinstance(rows, list) or not all(isinstance(r, str) for r in rows):
        raise ValueError("its 'dimensions' metadata is not a list of value names")
    return rows


def load_probe_judge(folder: Path, lm: LoadedModel, *, force: bool = False) -> ProbeJudge:
    """Load ``judge.json`` + ``judge.safetensors`` from a bundle folder, checking shapes and the judge
    model's fingerprint (``force`` accepts other weights)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = folder / JUDGE_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError.single(
            str(path), "the bundle has no value judge", hint="run 'causalguard behaviour report --bundle FOLDER'"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError.single(str(path), f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != JUDGE_SCHEMA:
        raise ConfigError.single(str(path), f"schema is not {JUDGE_SCHEMA}", field="schema")
    fingerprint = (doc.get("model") or {}).get("fingerprint")
    if not force and fingerprint != lm.fingerprint:
        raise ConfigError.single(
            str(path),
            f"judge fitted on weights {fingerprint}, not {lm.fingerprint}",
            field="model.fingerprint",
            hint="refit the judge for this model",
        )
    try:
        tensors = load_file(str(folder / JUDGE_WEIGHTS))
        rows = _weight_dimensions(folder / JUDGE_WEIGHTS)
    except (FileNotFoundError, SafetensorError, OSError, ValueError) as exc:
        raise ConfigError.single(str(folder / JUDGE_WEIGHTS), f"cannot read the judge weights: {exc}") from None
    dims = tuple(str(d) for d in doc.get("dimensions") or [])
    if not dims or rows is None or tuple(rows) != dims:
        raise ConfigError.single(
            str(path),
            f"dimensions {list(dims)} are not the judge weights' rows {rows} (in "
            "order): each value would be scored by another value's direction",
            field="dimensions",
            hint="refit the judge: 'causalguard behaviour report'",
        )
    layer = doc.get("layer")
    if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer <= lm.num_layers:
        raise ConfigError.single(
            str(path),
            f"layer {layer!r} is not a layer of the model (0..{lm.num_layers})",
            field="layer",
            hint="refit the judge: 'causalguard behaviour report'",
        )
    expected = {
        "mean": (lm.hidden_size,),
        "scale": (lm.hidden_size,),
        "directions": (len(dims), lm.hidden_size),
        "midpoints": (len(dims), lm.hidden_size),
    }
    for name, shape in expected.items():
        tensor = tensors.get(name)
        if tensor is None or tensor.shape != shape or not np.isfinite(tensor).all():
            raise ConfigError.single(
                str(folder / JUDGE_WEIGHTS),
                f"tensor {name!r} missing, not finite or not of shape {shape}",
                field=name,
                hint="refit the judge",
            )
    weights = ProbeWeights(dims, layer, tensors["mean"], tensors["scale"], tensors["directions"], tensors["midpoints"])
    try:
        return ProbeJudge(lm, weights)
    except ValueError as exc:
        raise ConfigError.single(str(path), str(exc), field="layer") from None


CONTRAST_FRAMINGS = (
    'Here is the advice that a person who is strongly {stance} {value} ({definition}) gives:\n"',
    'A chatbot that is strongly {stance} {value} ({definition}) replied:\n"',
)


@dataclass(frozen=True)
class ValueDefinition:
    name: str
    label: str
    definition: str
    opposite: str


class ContrastJudge:
    """A ``ValueJudge`` from likelihood contrasts, for any causal LM (the reference design).

    For value V and every framing: mean log-probability per token of the text after a context naming
    someone strongly *committed to* V minus after one strongly *opposed to* V; averaged over framings.
    Costs 2 x framings forward passes per value and text (the contexts' KV caches are reused), so it
    is the slow, model-agnostic option; ``ProbeJudge`` scores every value from one pass."""

    def __init__(
        self,
        lm: LoadedModel,
        values: Sequence[ValueDefinition],
        framings: Sequence[str] = CONTRAST_FRAMINGS,
        *,
        batch_size: int = 16,
    ) -> None:
        if not framings:
            raise ValueError("ContrastJudge needs at least one framing")
        self.lm = lm
        self.values = tuple(values)
        self.framings = tuple(framings)
        self.batch_size = batch_size

    @property
    def dimensions(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.values)

    def cache_version(self) -> str:
        """What its scores depend on (the model's fingerprint, the values' wordings, the framings), as a
        short hash: scores cached under another version are recomputed."""
        import hashlib

        parts = [self.lm.fingerprint, *(repr(v) for v in self.values), *self.framings]
        return "contrast:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    def context(self, framing: str, value: ValueDefinition, committed: bool) -> str:
        stance = "committed to" if committed else "opposed to"
        return framing.format(stance=stance, value=value.label, definition=value.definition)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        from causalguard.scoring.shared_prefix import continuation_logprobs

        bodies = [
            (
                encode_continuation(self.lm.tokenizer, t)[:MAX_REPLY_TOKENS]
                or encode_continuation(self.lm.tokenizer, " ")
            )
            for t in texts
        ]
        out = np.zeros((len(texts), len(self.values)), dtype=np.float64)
        with steer(None):
            for k, value in enumerate(self.values):
                for framing in self.framings:
                    for committed, sign in ((True, 1.0), (False, -1.0)):
                        prefix = encode_prefix(self.lm.tokenizer, self.context(framing, value, committed))
                        lps = continuation_logprobs(
                            self.lm.model, prefix, bodies, pad_id=self.lm.pad_token_id, batch_size=self.batch_size
                        )
                        out[:, k] += sign * np.array([float(lp.mean()) for lp in lps]) / len(self.framings)
        return out
