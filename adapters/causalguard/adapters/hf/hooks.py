"""Dispatcher forward hooks that apply the *current request's* interventions (SAE edits, steering vectors).

Two pieces, each a context manager that always cleans up in ``finally``:

- ``install_steering_hooks(model, layers)`` puts one forward hook on each named decoder layer and
  returns a ``SteeringHooks`` handle; leaving the block removes them (also on exceptions). With no
  active plan the hooks change nothing.
- ``steer(plan)`` makes ``plan`` the active interventions for the current thread or asyncio task
  (a ``ContextVar``), and restores the previous one on exit, so plans nest.

Because the plan lives in a context variable, never on the model or the hook, requests running at
the same time in different threads or tasks cannot see each other's interventions (the field's
known leak, e.g. transformers #42673). Run generation with ``asyncio.to_thread`` (which copies the
context) or ``contextvars.copy_context().run``. Hooks see every forward pass, prefill and each decode
step alike; scopes use the layer's ``position_ids`` (logical positions, correct under left padding).

Caveat: ``output_hidden_states=True`` in transformers 5 captures layer outputs with its own hook,
registered before ours, so the hidden states it returns show the hooked layer's output *before*
steering; every later layer and the logits do see the steered value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import torch

from causalguard.adapters.hf.interventions import Intervention, scope_mask

UNBOUNDED = 1 << 30


@dataclass(frozen=True)
class RowPlan:
    """The interventions for one batch row; ``prompt_length`` in real (unpadded) tokens."""

    interventions: tuple[Intervention, ...] = ()
    prompt_length: int = UNBOUNDED
    spans: tuple[frozenset[int], ...] = ()  # per intervention; empty unless its scope is a span

    def span_for(self, index: int) -> frozenset[int]:
        return self.spans[index] if index < len(self.spans) else frozenset()


@dataclass(frozen=True)
class SteeringPlan:
    """Per-row plans for a batch; a single row applies to every row of the batch."""

    rows: tuple[RowPlan, ...] = field(default_factory=tuple)

    @classmethod
    def broadcast(cls, interventions: Sequence[Intervention], prompt_length: int = UNBOUNDED) -> SteeringPlan:
        return cls((RowPlan(tuple(interventions), prompt_length),))

    def layers(self) -> set[int]:
        return {i.layer for row in self.rows for i in row.interventions}


_ACTIVE: ContextVar[SteeringPlan | None] = ContextVar("causalguard_steering_plan", default=None)


def active_plan() -> SteeringPlan | None:
    return _ACTIVE.get()


@contextmanager
def steer(plan: SteeringPlan | None) -> Iterator[SteeringPlan | None]:
    """Make ``plan`` the current context's interventions; restore the previous plan on exit."""
    token = _ACTIVE.set(plan)
    try:
        yield plan
    finally:
        _ACTIVE.reset(token)


def decoder_layers(model: Any) -> Any:
    """The model's list of decoder layers (Llama, Gemma, Mistral, Qwen, ... share ``model.layers``)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise ValueError(f"cannot find decoder layers on {type(model).__name__}")
    return layers


def _apply(plan: SteeringPlan, layer: int, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor | None:
    batch = hidden.shape[0]
    if len(plan.rows) not in (1, batch):
        raise ValueError(f"steering plan has {len(plan.rows)} rows for a batch of {batch}")
    out: torch.Tensor | None = None
    for row in range(batch):
        row_plan = plan.rows[row if len(plan.rows) > 1 else 0]
        row_positions = positions[row if positions.shape[0] > 1 else 0]
        for k, intervention in enumerate(row_plan.interventions):
            if intervention.layer != layer:
                continue
            mask = scope_mask(intervention.scope, row_positions, row_plan.prompt_length, row_plan.span_for(k))
            if not bool(mask.any()):
                continue
            if out is None:
                out = hidden.clone()
            out[row, mask] = out[row, mask] + intervention.delta(hidden[row, mask])
    return out


def _make_hook(layer: int) -> Any:
    def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
        plan = _ACTIVE.get()
        if plan is None or layer not in plan.layers():
            return None
        hidden = output[0] if isinstance(output, tuple) else output
        positions = kwargs.get("position_ids")
        if positions is None:
            positions = torch.arange(hidden.shape[1]).unsqueeze(0)
        changed = _apply(plan, layer, hidden, positions)
        if changed is None:
            return None
        return (changed, *output[1:]) if isinstance(output, tuple) else changed

    return hook


@dataclass
class HookHandles:
    """Handle for installed forward hooks; ``remove()`` is idempotent."""

    handles: list[Any] = field(default_factory=list)

    def remove(self) -> None:
        while self.handles:
            self.handles.pop().remove()

    @property
    def installed(self) -> bool:
        return bool(self.handles)


@dataclass
class SteeringHooks(HookHandles):
    """The dispatcher hooks on decoder layers (``layers``)."""

    layers: tuple[int, ...] = ()


@contextmanager
def install_steering_hooks(model: Any, layers: Iterable[int]) -> Iterator[SteeringHooks]:
    """Install one dispatcher hook per layer for the duration of the block."""
    modules = decoder_layers(model)
    wanted = tuple(sorted(set(layers)))
    for layer in wanted:
        if not 0 <= layer < len(modules):
            raise ValueError(f"unknown layer {layer}: the model has {len(modules)} decoder layers")
    handle = SteeringHooks(layers=wanted)
    try:
        for layer in wanted:
            handle.handles.append(modules[layer].register_forward_hook(_make_hook(layer), with_kwargs=True))
        yield handle
    finally:
        handle.remove()


@contextmanager
def replaced_layer_output(model: Any, layer: int, replace: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Replace one decoder layer's hidden-state output for the block (SAE training, evaluation, feature reads)."""

    def hook(module: Any, args: Any, output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output
        new = replace(hidden)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = decoder_layers(model)[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
