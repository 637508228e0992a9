"""Value adapters: PEFT LoRA adapters applied per batch row, through forward hooks on the linear modules.

A value adapter is an ordinary PEFT LoRA folder (``adapter_config.json`` + ``adapter_model.safetensors``,
as ``peft`` saves it, loadable by ``peft``, vLLM and llama.cpp's converter) plus a card, ``adapter.json``
(model fingerprint, value, direction, how it was trained). A bundle keeps them in
``adapters/<value>-<up|down>/``.

Serving applies an adapter without merging it or wrapping the model in ``peft``: one forward hook per
adapted linear module adds ``scale * (alpha / r) * B(A x)`` to the rows whose plan holds the adapter, so
rows with different adapters (or none) share one batch, the prefix cache and the continuous batcher, as
steering vectors do. The adapter rides in a row's interventions (``AdapterIntervention``); the plan lives
in the same context variable as SAE edits and vectors (``adapters/hf/hooks.py``), never on the model.

    adapter = load_value_adapter(bundle_dir / "adapters" / "benevolence-up", lm.model, fingerprint=lm.fingerprint)
    with install_adapter_hooks(lm.model, [adapter]):
        row = GenerationRow(prompt_ids, (adapter.intervention(1.0),))
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from causalguard.adapters.hf.hooks import HookHandles, active_plan
from causalguard.adapters.hf.interventions import Scope
from causalguard.errors import ConfigError
from causalguard.run_records import read_json_object

ADAPTER_CARD = "adapter.json"
ADAPTER_SCHEMA = "causalguard.value_adapter/1"
PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
ADAPTER_LAYER = -1  # an adapter is not a residual-stream edit: the decoder-layer dispatcher never matches it
MAX_ADAPTER_SCALE = 4.0
_PEFT_PREFIX = "base_model.model."


@dataclass(frozen=True)
class LoraPair:
    """One adapted linear module: ``down`` (A, ``[r, in]``) and ``up`` (B, ``[out, r]``)."""

    down: torch.Tensor
    up: torch.Tensor


@dataclass(frozen=True, eq=False)
class ValueAdapter:
    """A loaded value adapter: its LoRA pairs by module name, ``alpha / r`` and its card."""

    folder: Path
    name: str
    value: str
    direction: int
    pairs: Mapping[str, LoraPair]
    scaling: float
    card: dict[str, Any] = field(default_factory=dict)

    def intervention(self, scale: float = 1.0) -> AdapterIntervention:
        """The adapter at ``scale`` (1: as trained) as a row intervention."""
        if not (math.isfinite(scale) and 0 < scale <= MAX_ADAPTER_SCALE):
            raise ValueError(f"adapter scale must be finite and within (0, {MAX_ADAPTER_SCALE:g}], got {scale!r}")
        return AdapterIntervention(self, float(scale))


@dataclass(frozen=True, eq=False)
class AdapterIntervention:
    """A value adapter at a scale, for one row. Compared by identity (the prefix cache shares keys only
    under the very same intervention objects). ``layer`` is ``ADAPTER_LAYER``: the decoder-layer
    dispatcher skips it, the module hooks of ``install_adapter_hooks`` apply it."""

    adapter: ValueAdapter
    scale: float
    layer: int = ADAPTER_LAYER
    scope: Scope = field(default_factory=lambda: Scope("all"))

    def delta(self, hidden: torch.Tensor) -> torch.Tensor:
        raise TypeError("a value adapter changes linear modules, not a layer's output")


def residual_layers(interventions: Iterable[Any]) -> set[int]:
    """The decoder layers whose outputs ``interventions`` edit (value adapters edit none)."""
    return {i.layer for i in interventions if not isinstance(i, AdapterIntervention)}


def adapters_in(interventions: Iterable[Any]) -> list[ValueAdapter]:
    """The distinct value adapters among ``interventions``, in first-seen order."""
    seen: dict[int, ValueAdapter] = {}
    for i in interventions:
        if isinstance(i, AdapterIntervention):
            seen.setdefault(id(i.adapter), i.adapter)
    return list(seen.values())


def _make_module_hook(name: str) -> Any:
    def hook(module: Any, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
        plan = active_plan()
        if plan is None:
            return None
        batch = output.shape[0]
        if len(plan.rows) not in (1, batch):
            raise ValueError(f"steering plan has {len(plan.rows)} rows for a batch of {batch}")
        # the rows of each adapter of this module, with their factors (scale * alpha / r): one matmul per adapter
        groups: dict[int, tuple[LoraPair, list[int], list[float]]] = {}
        for row in range(batch):
            for intervention in plan.rows[row if len(plan.rows) > 1 else 0].interventions:
                if not isinstance(intervention, AdapterIntervention):
                    continue
                pair = intervention.adapter.pairs.get(name)
                if pair is None:
                    continue
                entry = groups.setdefault(id(pair), (pair, [], []))
                entry[1].append(row)
                entry[2].append(intervention.scale * intervention.adapter.scaling)
        if not groups:
            return None
        x = args[0]
        changed = output.clone()
        for pair, rows, factors in groups.values():
            index = torch.tensor(rows)
            weights = torch.tensor(factors, dtype=pair.down.dtype).view(-1, *([1] * (x.dim() - 1)))
            delta = (x[index].to(pair.down.dtype) @ pair.down.T) @ pair.up.T
            changed[index] += (weights * delta).to(output.dtype)
        return changed

    return hook


@dataclass
class AdapterHooks(HookHandles):
    """The adapter hooks on linear modules (``modules``)."""

    modules: tuple[str, ...] = ()


@contextmanager
def install_adapter_hooks(model: Any, adapters: Sequence[ValueAdapter | str]) -> Iterator[AdapterHooks]:
    """One forward hook on every linear module any of ``adapters`` adapts (or on the named modules), for the
    duration of the block (removed in ``finally``). One hook serves every adapter of its module; with no
    adapter in the active plan the hooks change nothing."""
    modules = dict(model.named_modules())
    names = tuple(
        sorted({name for adapter in adapters for name in ((adapter,) if isinstance(adapter, str) else adapter.pairs)})
    )
    for name in names:
        if name not in modules:
            raise ValueError(f"the model has no module {name!r} for a value adapter")
    handle = AdapterHooks(modules=names)
    try:
        for name in names:
            handle.handles.append(modules[name].register_forward_hook(_make_module_hook(name)))
        yield handle
    finally:
        handle.remove()


def _card(folder: Path) -> dict[str, Any]:
    path = folder / ADAPTER_CARD
    card = read_json_object(path, what="value-adapter card", hint="run 'causalguard levers adapters' to train adapters")
    if card.get("schema") != ADAPTER_SCHEMA:
        raise ConfigError.single(str(path), f"not a {ADAPTER_SCHEMA} card", field="schema")
    return card


def load_value_adapter(folder: Path, model: Any, *, fingerprint: str | None = None) -> ValueAdapter:
    """Read one value adapter folder and check it against ``model``.

    Raises ``ConfigError`` naming the file and field: a missing or unreadable file, another model's
    fingerprint, a value or direction that is not one, a LoRA config this loader does not apply (only
    plain LoRA: no DoRA, no bias, no rank pattern), a tensor for a module the model lacks, of the wrong
    shape, or with a non-finite number."""
    card = _card(folder)
    card_path, config_path, weights_path = folder / ADAPTER_CARD, folder / PEFT_CONFIG, folder / PEFT_WEIGHTS
    if fingerprint is not None and card.get("model_fingerprint") != fingerprint:
        raise ConfigError.single(
            str(card_path),
            f"trained on model {card.get('model_fingerprint')!r}, this model is {fingerprint!r}",
            field="model_fingerprint",
            hint="train adapters for this model ('causalguard levers adapters')",
        )
    value, direction = card.get("value"), card.get("direction")
    if not isinstance(value, str) or not value:
        raise ConfigError.single(str(card_path), "expected the adapter's value name", field="value")
    if direction not in (1, -1) or isinstance(direction, bool):
        raise ConfigError.single(str(card_path), f"direction must be 1 or -1, got {direction!r}", field="direction")
    config = read_json_object(config_path, what="PEFT adapter config", hint="re-run 'causalguard levers adapters'")
    if not weights_path.is_file():
        raise ConfigError.single(str(weights_path), "missing", hint="re-run 'causalguard levers adapters'")
    rank, alpha = config.get("r"), config.get("lora_alpha")
    if config.get("peft_type") != "LORA" or isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
        raise ConfigError.single(str(config_path), "expected a LoRA config with a positive rank r", field="r")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not math.isfinite(alpha) or alpha <= 0:
        raise ConfigError.single(str(config_path), f"lora_alpha {alpha!r} is not a positive number", field="lora_alpha")
    for unsupported, default in (
        ("use_dora", False),
        ("bias", "none"),
        ("rank_pattern", {}),
        ("alpha_pattern", {}),
        ("use_rslora", False),
    ):
        if config.get(unsupported, default) not in (default, None):
            raise ConfigError.single(
                str(config_path),
                f"{unsupported}={config.get(unsupported)!r} is not applied by causalguard's per-row hooks",
                field=unsupported,
                hint="train a plain LoRA adapter",
            )
    try:
        from safetensors.torch import load_file

        tensors = load_file(str(weights_path))
    except Exception as exc:  # safetensors raises its own errors on a damaged file
        raise ConfigError.single(
            str(weights_path),
            f"unreadable safetensors file ({type(exc).__name__})",
            hint="re-run 'causalguard levers adapters'",
        ) from None
    modules = dict(model.named_modules())
    halves: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        if not key.startswith(_PEFT_PREFIX) or not key.endswith((".lora_A.weight", ".lora_B.weight")):
            raise ConfigError.single(str(weights_path), "not a LoRA weight of a PEFT adapter", field=key)
        module, part = key[len(_PEFT_PREFIX) :].rsplit(".lora_", 1)
        halves.setdefault(module, {})[part[0]] = tensor
    pairs = {}
    for module, parts in sorted(halves.items()):
        target = modules.get(module)
        if target is None or not isinstance(target, torch.nn.Linear):
            raise ConfigError.single(str(weights_path), "the model has no linear module of this name", field=module)
        if set(parts) != {"A", "B"}:
            raise ConfigError.single(str(weights_path), "expected both lora_A and lora_B", field=module)
        down, up = parts["A"].to(torch.float32), parts["B"].to(torch.float32)
        if tuple(down.shape) != (rank, target.in_features) or tuple(up.shape) != (target.out_features, rank):
            raise ConfigError.single(
                str(weights_path),
                f"shapes {tuple(down.shape)} and {tuple(up.shape)} do not fit "
                f"a rank-{rank} adapter of a {target.in_features}->{target.out_features} "
                "module",
                field=module,
            )
        if not (bool(torch.isfinite(down).all()) and bool(torch.isfinite(up).all())):
            raise ConfigError.single(str(weights_path), "holds a non-finite number", field=module)
        pairs[module] = LoraPair(down.contiguous(), up.contiguous())
    if not pairs:
        raise ConfigError.single(str(weights_path), "holds no LoRA weights")
    return ValueAdapter(folder, folder.name, value, int(direction), pairs, float(alpha) / rank, card)


def load_value_adapters(folder: Path, model: Any, *, fingerprint: str | None = None) -> dict[str, ValueAdapter]:
    """Every adapter in a bundle's ``adapters/`` folder, by folder name (empty without the folder)."""
    if not folder.is_dir():
        return {}
    return {
        sub.name: load_value_adapter(sub, model, fingerprint=fingerprint)
        for sub in sorted(folder.iterdir())
        if sub.is_dir()
    }


@contextmanager
def install_intervention_hooks(model: Any, interventions: Iterable[Any]) -> Iterator[None]:
    """The dispatcher hooks every intervention among ``interventions`` needs, for the duration of the block:
    decoder-layer hooks for residual edits (SAE edits, steering vectors), module hooks for value adapters."""
    from causalguard.adapters.hf.hooks import install_steering_hooks

    items = list(interventions)
    with (
        install_steering_hooks(model, sorted(residual_layers(items))),
        install_adapter_hooks(model, adapters_in(items)),
    ):
        yield
