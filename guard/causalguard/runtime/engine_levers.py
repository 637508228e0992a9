"""Levers the proxy-mode upstream engine applies itself, and where a plan's request goes.

- LoRA adapters: llama.cpp's server takes per-request scales (``"lora": [{"id": 0, "scale": 1.0}, ...]``)
  for the adapters it loaded with ``--lora``. ``upstream.lora_adapters`` lists the adapter levers in the
  server's load order; a request sends every listed adapter's scale, so an adapter the plan does not use
  is at 0 (llama-server would otherwise apply its global scale, 1 unless started with
  ``--lora-init-without-apply``).
- Control vectors: llama.cpp sets them per server process, so ``upstream.control_vectors`` maps a vector
  lever to the API root of an upstream started with it, and a plan holding that lever is sent there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from causalguard.config.schema import UpstreamSpec
from causalguard.planning.planner import Plan


@dataclass(frozen=True)
class EngineRequest:
    """Where a request under a plan goes (``base_url``: None for the main upstream) and what its body
    carries beyond the chat completion."""

    base_url: str | None = None
    body: dict[str, Any] = field(default_factory=dict)


def engine_lever_ids(spec: UpstreamSpec | None) -> tuple[str, ...]:
    """Ids of every lever the upstream engines apply themselves (adapters, then control vectors)."""
    return () if spec is None else (*spec.lora_adapters, *spec.control_vectors, *spec.lora_models)


def engine_request(plan: Plan, spec: UpstreamSpec | None) -> EngineRequest:
    """The upstream and extra body fields for a request under ``plan``: the upstream started with the
    plan's control vector, if it has one; the scales of every adapter llama-server loaded; the model name
    of the plan's adapter on a server that picks adapters by name (vLLM)."""
    if spec is None:
        return EngineRequest()
    routed = next((spec.control_vectors[lever.id] for lever in plan.levers if lever.id in spec.control_vectors), None)
    body = upstream_body_extra(plan, spec.lora_adapters)
    model = next((spec.lora_models[lever.id] for lever in plan.levers if lever.id in spec.lora_models), None)
    if model is not None:
        body["model"] = model
    return EngineRequest(routed, body)


def lora_scales(plan: Plan, loaded: Sequence[str]) -> list[dict[str, Any]]:
    """The ``lora`` field for a request under ``plan``: one ``{"id", "scale"}`` per loaded adapter lever
    (empty when none is loaded)."""
    strength = {lever.id: float(lever.strength) for lever in plan.levers if lever.kind == "adapter"}
    return [{"id": index, "scale": strength.get(lever_id, 0.0)} for index, lever_id in enumerate(loaded)]


def upstream_body_extra(plan: Plan, loaded: Sequence[str]) -> dict[str, Any]:
    """What a request body to the upstream carries beyond the chat completion for ``plan``."""
    return {"lora": lora_scales(plan, loaded)} if loaded else {}
