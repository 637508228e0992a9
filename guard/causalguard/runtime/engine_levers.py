"""Levers the proxy-mode upstream engine applies itself: llama.cpp's server takes per-request LoRA
scales (``"lora": [{"id": 0, "scale": 1.0}, ...]``) for the adapters it loaded with ``--lora``.

``upstream.lora_adapters`` lists the adapter levers in the server's load order. A request sends every
listed adapter's scale, so an adapter the plan does not use is at 0 (llama-server would otherwise apply
its global scale, 1 unless started with ``--lora-init-without-apply``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from causalguard.planning.planner import Plan


def lora_scales(plan: Plan, loaded: Sequence[str]) -> list[dict[str, Any]]:
    """The ``lora`` field for a request under ``plan``: one ``{"id", "scale"}`` per loaded adapter lever
    (empty when none is loaded)."""
    strength = {lever.id: float(lever.strength) for lever in plan.levers if lever.kind == "adapter"}
    return [{"id": index, "scale": strength.get(lever_id, 0.0)} for index, lever_id in enumerate(loaded)]


def upstream_body_extra(plan: Plan, loaded: Sequence[str]) -> dict[str, Any]:
    """What a request body to the upstream carries beyond the chat completion for ``plan``."""
    return {"lora": lora_scales(plan, loaded)} if loaded else {}
