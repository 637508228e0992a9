"""What a lever is: a role prompt, a guided role prompt, a steering vector or an SAE feature edit, with a
direction and a strength.

- ``role``: an instruction in the system message;
- ``guided``: a role instruction amplified by classifier-free guidance against a negative wording (the
  opposite pole's, or none): ``guidance_scale`` g, ``negative_text`` (``runtime/guidance.py``);
- ``vector``: a direction added to the residual stream at ``layer`` on the tokens of ``vector_scope``
  (``generated``, the default, or ``all``: the prompt's tokens too, as llama.cpp's control vectors act);
  ``strength`` is signed, in units of the layer's median residual-stream norm (``adapters/hf/vectors.py``);
  ``vector_name`` names its direction in the bundle's vectors when it is not the target's own (a second
  extraction of the same value, e.g. ``security.labelled``: from the labelled replies);
- ``sae``: an SAE feature's decoder direction added at the SAE's layer;
- ``pair``: a role wording and a steering vector applied together, measured together: ``text`` in the system
  message (amplified by guidance when ``guidance_scale`` is set, against ``negative_text``) and the target's
  vector at ``layer`` with signed ``strength`` on the tokens of ``vector_scope``. A guidance twin carries no
  vector, so guidance amplifies the vector's shift as well as the wording's;
- ``adapter``: a value adapter (a LoRA adapter trained on the model's own judged replies) from the bundle's
  ``adapters/`` folder, named by ``adapter``; ``strength`` is its scale (1: as trained)
  (``adapters/hf/value_adapters.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from causalguard.values.inventory import Dimension

LeverKind = Literal["role", "sae", "guided", "vector", "pair", "adapter"]
VectorScope = Literal["generated", "all"]
VECTOR_SCOPES: tuple[VectorScope, ...] = ("generated", "all")


def role_instruction(dim: Dimension, direction: int) -> str:
    """The role lever's text: added to the system prompt when serving, and before the survey context."""
    if direction > 0:
        return (
            f"Answer as someone who is strongly inclined to the value of {dim.display}, which means {dim.definition}."
        )
    return (
        f"Answer as someone who is strongly disinclined to the value of {dim.display}, which means {dim.opposite_text}."
    )


@dataclass(frozen=True)
class LeverSpec:
    """One lever at one strength.

    ``strength`` of an SAE lever is signed, in units of the layer's median residual-stream norm
    (``add`` edit value = strength * norm / |W_dec[feature]|); a role lever's strength is 1.
    """

    id: str
    kind: LeverKind
    target: str | None
    direction: int
    strength: float
    feature: int | None = None
    text: str | None = None
    guidance_scale: float | None = None  # guided levers
    negative_text: str | None = None  # guided levers: the twin's wording (None: no role)
    layer: int | None = None  # vector levers
    adapter: str | None = None  # adapter levers: the folder name under the bundle's adapters/
    vector_scope: Literal["all"] | None = None  # vector levers: "all" adds it on the prompt's tokens too
    vector_name: str | None = None  # vector levers: the direction's key in the bundle's vectors (None: the target)

    @classmethod
    def role(cls, dim: Dimension, direction: int) -> LeverSpec:
        sign = "+" if direction > 0 else "-"
        return cls(
            id=f"role:{dim.name}:{sign}",
            kind="role",
            target=dim.name,
            direction=direction,
            strength=1.0,
            text=role_instruction(dim, direction),
        )

    @classmethod
    def guided(
        cls, target: str, direction: int, text: str, scale: float, negative_text: str | None, name: str
    ) -> LeverSpec:
        """``text`` amplified by guidance ``scale`` against ``negative_text`` (``name`` labels the wording)."""
        sign = "+" if direction > 0 else "-"
        against = "opposite" if negative_text else "plain"
        return cls(
            id=f"guided:{target}:{sign}:{name}:g{scale:g}:{against}",
            kind="guided",
            target=target,
            direction=direction,
            strength=1.0,
            text=text,
            guidance_scale=scale,
            negative_text=negative_text,
        )

    @classmethod
    def vector(
        cls, target: str, strength: float, layer: int, scope: VectorScope = "generated", source: str | None = None
    ) -> LeverSpec:
        """The bundle's steering vector for ``target`` at ``layer``, added with signed ``strength`` on the
        tokens of ``scope`` (an all-token lever's id ends in ``:all``; generated-token ids are unchanged).
        ``source`` picks another extraction of the target's direction (key ``<target>.<source>``; the id
        ends in ``:<source>``)."""
        sign = "+" if strength > 0 else "-"
        suffix = (":all" if scope == "all" else "") + (f":{source}" if source else "")
        return cls(
            id=f"vector:{target}:{sign}:L{layer}:{abs(strength):g}{suffix}",
            kind="vector",
            target=target,
            direction=1 if strength > 0 else -1,
            strength=strength,
            layer=layer,
            vector_scope="all" if scope == "all" else None,
            vector_name=f"{target}.{source}" if source else None,
        )

    @classmethod
    def pair(
        cls,
        target: str,
        text: str,
        name: str,
        strength: float,
        layer: int,
        *,
        scale: float | None = None,
        negative_text: str | None = None,
        scope: VectorScope = "generated",
        source: str | None = None,
    ) -> LeverSpec:
        """The wording ``text`` (labelled ``name``; amplified by guidance ``scale`` against ``negative_text``
        when ``scale`` is set) together with the target's vector at ``layer`` and signed ``strength``; the
        strength's sign is the direction."""
        if strength == 0 or not math.isfinite(strength):
            raise ValueError(f"a pair lever needs a finite, non-zero vector strength, got {strength!r}")
        sign = "+" if strength > 0 else "-"
        guidance = f"g{scale:g}:{'opposite' if negative_text else 'plain'}" if scale is not None else "g1"
        suffix = (":all" if scope == "all" else "") + (f":{source}" if source else "")
        return cls(
            id=f"pair:{target}:{sign}:{name}:{guidance}:L{layer}:{abs(strength):g}{suffix}",
            kind="pair",
            target=target,
            direction=1 if strength > 0 else -1,
            strength=strength,
            text=text,
            guidance_scale=scale,
            negative_text=negative_text if scale is not None else None,
            layer=layer,
            vector_scope="all" if scope == "all" else None,
            vector_name=f"{target}.{source}" if source else None,
        )

    @property
    def vector_tokens(self) -> VectorScope:
        """Where a vector lever is added: ``generated`` tokens or ``all`` (the prompt's too)."""
        return self.vector_scope or "generated"

    @property
    def vector_key(self) -> str:
        """The key of a vector lever's direction in the bundle's vectors: ``vector_name``, else the target."""
        return self.vector_name or self.target or ""

    @classmethod
    def value_adapter(cls, target: str, direction: int, adapter: str, scale: float) -> LeverSpec:
        """The bundle's value adapter ``adapter`` (trained for ``target`` and ``direction``) at ``scale``."""
        sign = "+" if direction > 0 else "-"
        return cls(
            id=f"adapter:{target}:{sign}:{adapter}:s{scale:g}",
            kind="adapter",
            target=target,
            direction=direction,
            strength=scale,
            adapter=adapter,
        )

    @classmethod
    def sae(cls, feature: int, strength: float, target: str | None) -> LeverSpec:
        return cls(
            id=f"sae:f{feature}:{strength:+g}",
            kind="sae",
            target=target,
            direction=1 if strength > 0 else -1,
            strength=strength,
            feature=feature,
        )
