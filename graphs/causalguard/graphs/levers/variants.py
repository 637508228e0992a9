"""More levers to try than the survey catalog holds: SAE strength sweeps and reply-style role wordings.

The survey catalog (``levers measure``) has one role wording per value and pole ("answer as someone
strongly inclined to the value of X") and SAE features at +-0.25/0.5. Replies showed that every SAE
setting there degrades replies and that the value-role wording rarely moves what the chatbot says.
Here are the variants the behavioural catalog measures beside them:

- ``sweep_levers``: each target feature at weaker strengths;
- ``REPLY_STYLE_WORDINGS``: one instruction per value and pole that says what the reply should do
  (written for this project; tuned only on the dev prompts' measurements);
- ``load_wordings``: the operator's own wordings from a YAML file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from causalguard.bundle.catalog import Catalog
from causalguard.bundle.lever import LeverSpec, VectorScope
from causalguard.errors import ConfigError, Problem
from causalguard.yaml_files import line_of, validate_yaml_file_with_node

REPLY_STYLE_WORDINGS: dict[str, tuple[str, str]] = {
    "self_direction": (
        "In your reply, encourage the user to think for themselves, choose their own path and try their own ideas.",
        "In your reply, tell the user to follow the established way and the instructions of others rather than "
        "their own ideas.",
    ),
    "stimulation": (
        "In your reply, recommend something new, exciting or adventurous, and encourage the user to take on a "
        "challenge.",
        "In your reply, recommend the familiar, calm and predictable option, and advise against anything new or risky.",
    ),
    "hedonism": (
        "In your reply, emphasise enjoying life: recommend what is fun, pleasant and a treat for the user.",
        "In your reply, advise self-discipline: put duty and restraint before fun and pleasure.",
    ),
    "achievement": (
        "In your reply, focus on success: recommend ambitious goals, hard work and ways to stand out and be "
        "recognised.",
        "In your reply, say that success and ambition do not matter much, and recommend taking it easy rather "
        "than competing.",
    ),
    "power": (
        "In your reply, focus on status, control and influence: recommend ways for the user to gain authority, "
        "wealth and leverage over others.",
        "In your reply, advise against seeking status, control or wealth, and recommend sharing decisions and "
        "staying modest.",
    ),
    "security": (
        "In your reply, put safety first: recommend caution, stability and protecting the user's health, home and "
        "money.",
        "In your reply, dismiss safety concerns: recommend taking risks and not worrying about stability or "
        "protection.",
    ),
    "conformity": (
        "In your reply, advise following the rules, meeting other people's expectations and being polite and "
        "restrained.",
        "In your reply, encourage the user to ignore rules and other people's expectations and do as they please.",
    ),
    "tradition": (
        "In your reply, recommend respecting customs, family traditions and the wisdom of earlier generations.",
        "In your reply, advise breaking with old customs and traditions as outdated.",
    ),
    "benevolence": (
        "In your reply, show warmth and care: suggest ways to help, support and be kind to the people close to "
        "the user.",
        "In your reply, put the user's own interest first and do not suggest helping or caring for other people.",
    ),
    "universalism": (
        "In your reply, consider fairness to everyone, tolerance of other people and care for nature and the "
        "environment.",
        "In your reply, consider only the user and their own group, and ignore fairness to strangers and the "
        "environment.",
    ),
}


def wording_lever(target: str, direction: int, text: str, name: str) -> LeverSpec:
    """A role lever with its own wording; its id is ``role:<value>:<+|->:<name>``."""
    sign = "+" if direction > 0 else "-"
    return LeverSpec(
        id=f"role:{target}:{sign}:{name}", kind="role", target=target, direction=direction, strength=1.0, text=text
    )


def reply_style_levers(dimensions: Sequence[str]) -> list[LeverSpec]:
    """The built-in reply-style wording for every value that has one, both poles."""
    return [
        wording_lever(d, sign, REPLY_STYLE_WORDINGS[d][k], "reply")
        for d in dimensions
        if d in REPLY_STYLE_WORDINGS
        for k, sign in ((0, 1), (1, -1))
    ]


def sweep_levers(features: Iterable[tuple[int, str | None]], strengths: Sequence[float]) -> list[LeverSpec]:
    """Each (feature, target) at every strength (signed, residual-norm units)."""
    for s in strengths:
        if s == 0 or abs(s) > 4:
            raise ValueError(f"sweep strength {s} must be non-zero and within +-4 residual norms")
    return [LeverSpec.sae(f, s, t) for f, t in features for s in strengths]


class _Wording(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str = Field(min_length=1)
    direction: Literal["up", "down"]
    text: str = Field(min_length=10, max_length=2000)
    name: str = Field(default="operator", pattern=r"^[A-Za-z0-9_]{1,32}$")


class WordingsFile(BaseModel):
    """``wordings: [{value: benevolence, direction: up, text: "...", name: mine}, ...]``"""

    model_config = ConfigDict(extra="forbid")
    wordings: list[_Wording] = Field(min_length=1)


def load_wordings(path: Path, dimensions: Sequence[str]) -> list[LeverSpec]:
    """The operator's role wordings; errors name the file, line and field."""
    doc, node = validate_yaml_file_with_node(WordingsFile, path)
    levers = []
    problems = []
    seen: set[str] = set()
    for k, w in enumerate(doc.wordings):
        if w.value not in dimensions:
            problems.append(
                Problem(
                    str(path),
                    line_of(node, ("wordings", k, "value")),
                    f"wordings[{k}].value",
                    f"unknown value {w.value!r}",
                    hint=f"one of {', '.join(dimensions)}",
                )
            )
            continue
        lever = wording_lever(w.value, 1 if w.direction == "up" else -1, w.text.strip(), w.name)
        if lever.id in seen:
            problems.append(
                Problem(
                    str(path),
                    line_of(node, ("wordings", k, "name")),
                    f"wordings[{k}].name",
                    f"a second wording with id {lever.id}",
                    hint="give each wording of a value and direction its own name",
                )
            )
        seen.add(lever.id)
        levers.append(lever)
    if problems:
        raise ConfigError(problems)
    return levers


def guided_levers(dimensions: Sequence[str], scales: Sequence[float], against: str = "opposite") -> list[LeverSpec]:
    """Each value and pole's reply-style wording amplified by guidance at ``scales``, against the opposite
    pole's wording (``against="opposite"``), against no role (``"plain"``) or both."""
    if against not in ("opposite", "plain", "both"):
        raise ValueError(f"guidance is against 'opposite', 'plain' or 'both', got {against!r}")
    out = []
    for d in dimensions:
        if d not in REPLY_STYLE_WORDINGS:
            continue
        for k, sign in ((0, 1), (1, -1)):
            for scale in scales:
                for negative in ((REPLY_STYLE_WORDINGS[d][1 - k],) if against != "plain" else ()) + (
                    (None,) if against != "opposite" else ()
                ):
                    out.append(LeverSpec.guided(d, sign, REPLY_STYLE_WORDINGS[d][k], scale, negative, "reply"))
    return out


VECTOR_SCOPE_CHOICES: dict[str, tuple[VectorScope, ...]] = {
    "generated": ("generated",),
    "all": ("all",),
    "both": ("generated", "all"),
}


def vector_levers(
    vectors: dict[str, int], strengths: Sequence[float], scopes: Sequence[VectorScope] = ("generated",)
) -> list[LeverSpec]:
    """Each steering vector (key -> layer; a key is a value, or ``<value>.<source>`` for another extraction
    of it) at every signed strength, on each token scope."""
    return [
        LeverSpec.vector(key.partition(".")[0], strength, layer, scope, key.partition(".")[2] or None)
        for key, layer in vectors.items()
        for strength in strengths
        for scope in scopes
    ]


def pair_levers(
    vectors: dict[str, int],
    strengths: Sequence[float],
    scales: Sequence[float],
    scopes: Sequence[VectorScope] = ("generated",),
) -> list[LeverSpec]:
    """Each value and pole's reply-style wording together with the value's steering vector (key -> layer, as
    in ``vector_levers``) at every strength magnitude, signed by the pole; ``scales``: 1 puts the wording in
    the system message as a role lever does, g > 1 amplifies it by guidance against the opposite pole's
    wording."""
    out = []
    for key, layer in vectors.items():
        value, _, source = key.partition(".")
        if value not in REPLY_STYLE_WORDINGS:
            continue
        for k, sign in ((0, 1), (1, -1)):
            wording, opposite = REPLY_STYLE_WORDINGS[value][k], REPLY_STYLE_WORDINGS[value][1 - k]
            for scale in scales:
                guided = scale > 1
                for strength in strengths:
                    for scope in scopes:
                        out.append(
                            LeverSpec.pair(
                                value,
                                wording,
                                "reply",
                                sign * abs(strength),
                                layer,
                                scale=scale if guided else None,
                                negative_text=opposite if guided else None,
                                scope=scope,
                                source=source or None,
                            )
                        )
    return out


def parse_directions(text: str, dimensions: Sequence[str]) -> set[tuple[str, int]]:
    """``"power+,hedonism-"`` -> {(power, 1), (hedonism, -1)}: values of ``dimensions``, each ending in + or -."""
    out = set()
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        value, sign = item[:-1], item[-1:]
        if sign not in ("+", "-") or value not in dimensions:
            raise ValueError(
                f"--directions: expected comma-separated values with + or - (e.g. 'power+,hedonism-'), got "
                f"{item!r}; values: {', '.join(dimensions)}"
            )
        out.add((value, 1 if sign == "+" else -1))
    if not out:
        raise ValueError(f"--directions: no direction given in {text!r}")
    return out


def _numbers(text: str, what: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{what}: expected comma-separated numbers, got {text!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{what}: expected comma-separated finite numbers, got {text!r}")
    return values


def variant_levers(
    catalog: Catalog,
    sweep: str | None,
    reply_wordings: bool,
    wordings: Path | None,
    *,
    guided: str | None = None,
    guided_against: str = "opposite",
    vectors: str | None = None,
    vector_layers: dict[str, int] | None = None,
    vector_scope: str = "generated",
    adapters: str | None = None,
    adapter_targets: dict[str, tuple[str, int]] | None = None,
    pairs: str | None = None,
    pair_guidance: str = "1",
    directions: set[tuple[str, int]] | None = None,
) -> tuple[list[LeverSpec], dict[str, str]]:
    """The variants the command-line options ask for, and how each was proposed (lever id -> source).

    ``sweep``: comma-separated signed strengths for every catalog SAE feature that has a target;
    ``guided``: guidance scales for every reply-style wording (``guided_against``: opposite, plain, both);
    ``vectors``: signed strengths for every steering vector (``vector_layers``: value -> layer;
    ``vector_scope``: generated, all or both);
    ``adapters``: scales for every value adapter (``adapter_targets``: folder name -> value, direction);
    ``pairs``: vector strength magnitudes for every reply-style wording together with its value's vector
    (``pair_guidance``: guidance scales, 1 = the wording unamplified; layers and scope as for ``vectors``);
    ``directions``: keep only the variants built for these (value, direction) pairs (SAE sweeps and
    adapters included)."""
    levers: list[LeverSpec] = []
    sources: dict[str, str] = {}
    if adapters:
        if not adapter_targets:
            raise ValueError("--adapters: the bundle has no value adapters; run 'causalguard levers adapters' first")
        scales = _numbers(adapters, "--adapters")
        if any(not 0 < s <= 4 for s in scales):
            raise ValueError(f"--adapters: scales must be within (0, 4], got {scales}")
        for name, (value, direction) in sorted(adapter_targets.items()):
            for scale in scales:
                lever = LeverSpec.value_adapter(value, direction, name, scale)
                levers.append(lever)
                sources[lever.id] = "adapter"
    if guided:
        scales = _numbers(guided, "--guided")
        bad = [s for s in scales if not 1 <= s <= 10]
        if bad:
            raise ValueError(f"--guided: guidance scales must be in [1, 10], got {bad}")
        for lever in guided_levers(catalog.dimensions, scales, guided_against):
            levers.append(lever)
            sources[lever.id] = "guided"
    if vectors:
        if not vector_layers:
            raise ValueError("--vectors: the bundle has no steering vectors; run 'causalguard levers vectors' first")
        strengths = _numbers(vectors, "--vectors")
        if any(s == 0 or abs(s) > 8 for s in strengths):
            raise ValueError(f"--vectors: strengths must be non-zero and within +-8 residual norms, got {strengths}")
        scopes = VECTOR_SCOPE_CHOICES.get(vector_scope)
        if scopes is None:
            raise ValueError(f"--vector-scope: expected one of {', '.join(VECTOR_SCOPE_CHOICES)}, got {vector_scope!r}")
        for lever in vector_levers(vector_layers, strengths, scopes):
            levers.append(lever)
            sources[lever.id] = "vector"
    if pairs:
        if not vector_layers:
            raise ValueError("--pairs: the bundle has no steering vectors; run 'causalguard levers vectors' first")
        strengths = _numbers(pairs, "--pairs")
        if any(s <= 0 or s > 8 for s in strengths):
            raise ValueError(f"--pairs: vector strengths are magnitudes in (0, 8] residual norms, got {strengths}")
        scales = _numbers(pair_guidance, "--pair-guidance")
        bad = [s for s in scales if not 1 <= s <= 10]
        if bad:
            raise ValueError(f"--pair-guidance: guidance scales must be in [1, 10], got {bad}")
        scopes = VECTOR_SCOPE_CHOICES.get(vector_scope)
        if scopes is None:
            raise ValueError(f"--vector-scope: expected one of {', '.join(VECTOR_SCOPE_CHOICES)}, got {vector_scope!r}")
        for lever in pair_levers(vector_layers, strengths, scales, scopes):
            levers.append(lever)
            sources[lever.id] = "pair"
    if sweep:
        try:
            strengths = [float(x) for x in sweep.split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"expected comma-separated numbers, got {sweep!r}") from None
        features = sorted(
            {
                (e.feature, e.target)
                for e in catalog.levers
                if e.kind == "sae" and e.feature is not None and e.target is not None
            },
            key=lambda ft: catalog.dimensions.index(ft[1] or ""),
        )
        for lever in sweep_levers(features, strengths):
            levers.append(lever)
            sources[lever.id] = "sweep"
    if reply_wordings:
        for lever in reply_style_levers(catalog.dimensions):
            levers.append(lever)
            sources[lever.id] = "reply_wording"
    if wordings is not None:
        for lever in load_wordings(wordings, catalog.dimensions):
            levers.append(lever)
            sources[lever.id] = "operator_wording"
    if directions is not None:
        levers = [lever for lever in levers if (lever.target, lever.direction) in directions]
        sources = {lever.id: sources[lever.id] for lever in levers}
    return levers, sources
