"""The steering catalog (``catalog.json`` in a bundle) and its report.

For every lever: its measured effect on every value in the survey (mean, 95% CI, n personas), the
Table-1 counts (personas whose value increased / decreased / stayed within noise), specificity
(on-target effect over the mean absolute off-target effect), the share of personas moved in the
intended direction, and its fluency cost.

Schema ``causalguard.catalog/2`` adds what the replies showed (``causalguard behaviour report``):
per lever, ``replies`` = its judge effect on every value (reply scale: +1 = a typical high-pole
reply, -1 = a typical low-pole one; 95% CI over reply pairs), its reply quality, and a verdict
(``usable``, ``no_target_effect``, ``degrades_replies``, ``weaker_setting``, ``failed_held_out``);
``replies_baseline`` = the unsteered replies' mean judge score per value. Version-1 catalogs load with
no reply data. ``replies.held_out`` is the lever's pre-registered test on held-out prompts
(``causalguard behaviour held-out``): a failed one makes the lever ``failed_held_out``, never planned.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from causalguard.artifacts import CATALOG_FILE, CATALOG_REPORT, CATALOG_SCHEMA
from causalguard.bundle.integrity import seal_bundle
from causalguard.bundle.lever import LeverSpec, VectorScope
from causalguard.errors import ConfigError
from causalguard.yaml_files import problems_from_validation


class Interval(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    mean: float
    ci_low: float
    ci_high: float
    n: int = Field(ge=0, le=10_000_000)


class Fluency(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    perplexity: float | None = Field(gt=0)
    perplexity_ratio: float | None = Field(gt=0)
    unparseable_rate: float = Field(ge=0, le=1)


class ModelRef(BaseModel):
    """The model the catalog was measured on."""

    model_config = ConfigDict(extra="forbid")
    name: str
    fingerprint: str = ""


class CatalogSae(BaseModel):
    """The SAE the catalog's SAE levers use."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="SAE folder, relative to the bundle (or absolute)")
    hook_name: str | None = None
    layer: int | None = Field(default=None, ge=0)
    d_sae: int | None = Field(default=None, gt=0)
    residual_norm: float = Field(
        gt=0, allow_inf_nan=False, description="median residual-stream norm at the layer: the unit of SAE strengths"
    )
    strength_unit: str = "median residual-stream norm at the layer"


Verdict = Literal["usable", "no_target_effect", "degrades_replies", "weaker_setting", "failed_held_out"]


class HeldOut(BaseModel):
    """A lever's target effect pooled over the held-out validations that planned it alone."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    mean: float
    ci_low: float
    ci_high: float
    n: int = Field(gt=0, description="reply pairs over all looks")
    level: float = Field(gt=0, lt=1, description="the pooled interval's coverage (Pocock-adjusted for the looks)")
    looks: list[str] = Field(min_length=1, description="the validation files pooled")
    passed: bool


class LeverReplies(BaseModel):
    """A lever as the replies showed it (judge effects in reply-scale units, reply quality)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    effects: dict[str, Interval]
    moves_target_as_intended: bool | None
    degraded: int = Field(ge=0)
    n: int = Field(gt=0, le=10_000_000)
    degraded_rate: float = Field(ge=0, le=1)
    p_value: float = Field(ge=0, le=1)
    degrades_replies: bool
    verdict: Verdict
    why: str
    screening: Interval | None = Field(
        default=None,
        description="after 'behaviour confirm': the first measurement "
        "of the target effect, which selected the lever; effects are then the "
        "confirmation's",
    )
    held_out: HeldOut | None = Field(
        default=None, description="after 'behaviour held-out': the pooled held-out test of the lever's target effect"
    )

    @model_validator(mode="after")
    def _verdict_matches_record(self) -> LeverReplies:
        """The verdict summarises the record: never 'usable' for replies it degrades or a failed held-out
        test, never 'degrades_replies' for replies it does not degrade."""
        if self.degraded > self.n:
            raise ValueError(f"degraded: {self.degraded} of {self.n} replies")
        if self.verdict == "usable" and self.degrades_replies:
            raise ValueError("verdict: 'usable', but degrades_replies is true")
        if self.verdict == "degrades_replies" and not self.degrades_replies:
            raise ValueError("verdict: 'degrades_replies', but degrades_replies is false")
        if self.verdict == "usable" and self.held_out is not None and not self.held_out.passed:
            raise ValueError("verdict: 'usable', but the held-out test failed (expected 'failed_held_out')")
        return self

    @property
    def confirmed(self) -> bool:
        """Measured again on replies nothing selected it on ('causalguard behaviour confirm')."""
        return self.screening is not None

    @property
    def plannable(self) -> bool:
        """Never planned: levers that degrade replies, and weaker settings of a feature kept stronger."""
        return self.verdict in ("usable", "no_target_effect")


REPLY_ONLY_KINDS = ("guided", "vector", "pair", "adapter")  # the survey cannot score guidance,
# generated-token vectors or adapters trained on replies
VECTOR_KINDS = ("vector", "pair")  # levers that add one of the bundle's steering vectors
WORDING_KINDS = ("role", "guided", "pair")  # levers whose wording goes into the system message
MAX_STRENGTH = 1000.0  # far beyond any lever measured (SAE: residual norms, vectors: layer-norm fractions)
MAX_REPLY_SCORE = 100.0  # reply-scale scores: +-1 is a typical pole reply


class LeverEntry(BaseModel):
    """One lever with what was measured of it. Role and SAE levers carry survey measurements
    (``effects``, ``counts``, ``fluency``); guided, vector, pair and adapter levers are measured on replies only
    and carry ``None`` there."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:+-]+$")
    kind: Literal["role", "sae", "guided", "vector", "pair", "adapter"]
    target: str | None
    direction: int = Field(ge=-1, le=1)
    strength: float = Field(ge=-MAX_STRENGTH, le=MAX_STRENGTH)
    feature: int | None = None
    text: str | None = None
    guidance_scale: float | None = Field(
        default=None,
        ge=1,
        le=10,
        allow_inf_nan=False,
        description="guided levers (and pair levers whose wording is guided): the guidance scale g",
    )
    negative_text: str | None = Field(default=None, description="guided levers: the twin's wording (none: no role)")
    layer: int | None = Field(
        default=None, ge=0, le=10_000, description="vector and pair levers: the layer the vector is added at"
    )
    vector_scope: Literal["all"] | None = Field(
        default=None,
        description="vector levers: 'all' adds the vector on the prompt's tokens too (none: generated tokens only)",
    )
    vector_name: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9_]+\.[a-z0-9_]+$",
        description="vector levers: the direction's key in the bundle's vectors when not the target's own "
        "(e.g. security.labelled)",
    )
    adapter: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9_]+-(up|down)$",
        description="adapter levers: the adapter's folder under the bundle's adapters/",
    )
    source: str = Field(
        description="how the lever was proposed: value_role, contrast, your_values, guided, vector, pair"
    )
    effects: dict[str, Interval] | None = Field(description="survey effects (None: measured on replies only)")
    counts: dict[str, dict[str, int]] | None = None
    intended_share: float | None = Field(
        ge=0, le=1, description="share of personas moved in the intended direction on target"
    )
    specificity: float | None
    fluency: Fluency | None
    replies: LeverReplies | None = Field(default=None, description="catalog/2: measured on replies")

    @model_validator(mode="after")
    def _kind_fields(self) -> LeverEntry:
        surveyed = self.effects is not None and self.counts is not None and self.fluency is not None
        if self.kind in REPLY_ONLY_KINDS:
            if self.effects is not None:
                raise ValueError(f"{self.id}: a {self.kind} lever is measured on replies only (effects: null)")
        elif not surveyed:
            raise ValueError(f"{self.id}: a {self.kind} lever needs its survey effects, counts and fluency")
        if self.kind == "guided" and (self.guidance_scale is None or not self.text):
            raise ValueError(f"{self.id}: a guided lever needs its text and guidance_scale")
        if self.kind == "vector" and (self.layer is None or self.target is None):
            raise ValueError(f"{self.id}: a vector lever needs its target and layer")
        if self.kind == "adapter" and (self.adapter is None or self.target is None or not 0 < self.strength <= 4):
            raise ValueError(f"{self.id}: an adapter lever needs its target, its adapter folder and a scale in (0, 4]")
        if self.kind == "role" and not self.text:
            raise ValueError(f"{self.id}: a role lever needs its text")
        if self.kind == "pair" and (not self.text or self.layer is None or self.target is None):
            raise ValueError(f"{self.id}: a pair lever needs its text (wording), target and layer (vector)")
        if self.kind == "pair" and self.direction * self.strength <= 0:
            raise ValueError(
                f"{self.id}: a pair lever's vector strength must be non-zero with the sign of its direction"
            )
        if self.kind not in ("guided", "pair") and self.guidance_scale is not None:
            raise ValueError(
                f"{self.id}: only guided and pair levers have a guidance_scale (a {self.kind} lever has null)"
            )
        if self.kind not in VECTOR_KINDS and self.layer is not None:
            raise ValueError(
                f"{self.id}: only vector and pair levers have a layer (a {self.kind} lever has layer: null)"
            )
        if self.kind not in VECTOR_KINDS and self.vector_scope is not None:
            raise ValueError(
                f"{self.id}: only vector and pair levers have a vector_scope (a {self.kind} lever has null)"
            )
        if self.vector_name is not None and (
            self.kind not in VECTOR_KINDS or not self.vector_name.startswith(f"{self.target}.")
        ):
            raise ValueError(
                f"{self.id}: vector_name '{self.vector_name}' must be a vector or pair lever's key for its own target "
                f"('{self.target}.<source>')"
            )
        return self

    @field_validator("direction", "strength", "feature", "layer", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("expected a number, got true/false")
        return value

    def survey_effect(self, value: str) -> Interval | None:
        """The survey's measured effect on ``value`` (None for levers measured on replies only)."""
        return self.effects[value] if self.effects is not None else None

    def spec(self) -> LeverSpec:
        return LeverSpec(
            id=self.id,
            kind=self.kind,
            target=self.target,
            direction=self.direction,
            strength=self.strength,
            feature=self.feature,
            text=self.text,
            guidance_scale=self.guidance_scale,
            negative_text=self.negative_text,
            layer=self.layer,
            adapter=self.adapter,
            vector_scope=self.vector_scope,
            vector_name=self.vector_name,
        )

    @property
    def vector_tokens(self) -> VectorScope:
        """Where a vector lever is added: ``generated`` tokens or ``all`` (the prompt's too)."""
        return self.vector_scope or "generated"

    @property
    def vector_key(self) -> str:
        """The key of a vector lever's direction in the bundle's vectors: ``vector_name``, else the target."""
        return self.vector_name or self.target or ""


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)
    schema_: str = Field(alias="schema", pattern=r"^causalguard\.catalog/[12]$")
    model: ModelRef
    dimensions: list[str]
    sae: CatalogSae | None = Field(description="SAE folder (relative to the bundle), layer, residual norm")
    personas: list[str]
    baseline: dict[str, Interval] = Field(description="unsteered scores over the personas (what audits compare to)")
    noise_threshold: dict[str, Annotated[float, Field(ge=0, le=2)]]
    baseline_fluency: Fluency
    levers: list[LeverEntry]
    replies_baseline: dict[str, Annotated[float, Field(ge=-MAX_REPLY_SCORE, le=MAX_REPLY_SCORE)]] | None = Field(
        default=None, description="catalog/2: unsteered replies' mean judge score per value (reply scale)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Catalog:
        """Every per-value table covers exactly the catalog's values; levers are unique and well-formed."""
        dims = set(self.dimensions)
        if len(dims) != len(self.dimensions):
            raise ValueError("dimensions: a value is listed twice")
        tables: list[tuple[str, set[str]]] = [
            ("baseline", set(self.baseline)),
            ("noise_threshold", set(self.noise_threshold)),
        ]
        if self.replies_baseline is not None:
            tables.append(("replies_baseline", set(self.replies_baseline)))
        seen: set[str] = set()
        for k, lever in enumerate(self.levers):
            if lever.id in seen:
                raise ValueError(f"levers[{k}].id: '{lever.id}' is listed twice")
            seen.add(lever.id)
            if lever.effects is not None:
                tables.append((f"levers[{k}].effects ({lever.id})", set(lever.effects)))
            if lever.replies is not None:
                tables.append((f"levers[{k}].replies.effects ({lever.id})", set(lever.replies.effects)))
            if lever.target is not None and lever.target not in dims:
                raise ValueError(f"levers[{k}].target: '{lever.target}' is not one of the catalog's values")
            if lever.kind == "sae" and (lever.feature is None or lever.feature < 0):
                raise ValueError(f"levers[{k}].feature: an SAE lever needs a feature index >= 0 ({lever.id})")
        for name, keys in tables:
            if keys != dims:
                missing, extra = sorted(dims - keys), sorted(keys - dims)
                raise ValueError(
                    f"{name}: "
                    + "; ".join(
                        part
                        for part in (
                            f"missing {', '.join(missing)}" if missing else "",
                            f"unknown {', '.join(extra)}" if extra else "",
                        )
                        if part
                    )
                    + " (every table must cover exactly the catalog's dimensions)"
                )
        return self

    @property
    def has_replies(self) -> bool:
        """Whether the levers were measured on replies (catalog/2 with a behaviour report)."""
        return self.replies_baseline is not None

    def lever(self, lever_id: str) -> LeverEntry:
        for entry in self.levers:
            if entry.id == lever_id:
                return entry
        raise KeyError(lever_id)


def build_catalog(
    *,
    model: dict[str, Any],
    dimensions: Sequence[str],
    levers: Sequence[LeverSpec],
    sources: dict[str, str],
    measured: dict[str, Any],
    fluency: dict[str, dict[str, Any]],
    sae: dict[str, Any] | None,
) -> Catalog:
    entries = []
    for lever in levers:
        eff = measured["effects"][lever.id]
        per_value = eff["per_value"]
        target = lever.target
        intended = specificity = None
        if target is not None:
            c = eff["counts"][target]
            moved = c["increased"] if lever.direction > 0 else c["decreased"]
            intended = moved / max(1, sum(c.values()))
            off = [abs(per_value[d]["mean"]) for d in dimensions if d != target]
            specificity = lever.direction * per_value[target]["mean"] / max(sum(off) / len(off), 1e-9)
        entries.append(
            LeverEntry(
                **asdict(lever),
                source=sources.get(lever.id, ""),
                effects=per_value,
                counts=eff["counts"],
                intended_share=intended,
                specificity=specificity,
                fluency=Fluency(**fluency[lever.id]),
            )
        )
    return Catalog(
        schema=CATALOG_SCHEMA,
        model=ModelRef(**model),
        dimensions=list(dimensions),
        sae=CatalogSae(**sae) if sae is not None else None,
        personas=measured["personas"],
        baseline=measured["baseline"],
        noise_threshold=measured["noise_threshold"],
        baseline_fluency=Fluency(**fluency["none"]),
        levers=entries,
    )


def save_catalog(catalog: Catalog, folder: Path) -> Path:
    path = folder / CATALOG_FILE
    path.write_text(json.dumps(catalog.model_dump(by_alias=True), indent=2) + "\n")
    (folder / CATALOG_REPORT).write_text(render_report(catalog))
    seal_bundle(folder)
    return path


def load_catalog(folder: Path) -> Catalog | None:
    path = folder / CATALOG_FILE
    if not path.exists():
        return None
    try:
        return Catalog.model_validate(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise ConfigError.single(str(path), f"invalid JSON: {exc.msg}", line=exc.lineno) from None
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(exc, Catalog, str(path), None)) from None


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:+.{digits}f}"


def _replies_section(catalog: Catalog) -> list[str]:
    """Catalog v2: every lever's effect on its own target in replies, its verdict and why."""
    lines = [
        "",
        "## In replies (reply scale: +1 = a typical reply holding the value, -1 = rejecting it)",
        "",
        "| lever | target | survey effect | reply effect (95% CI) | degraded | verdict | why |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in catalog.levers:
        r = e.replies
        if r is None:
            lines.append(f"| {e.id} | {e.target or '?'} | | | | not measured on replies | never planned |")
            continue
        t = e.target
        eff = r.effects[t] if t else None
        survey = e.survey_effect(t) if t else None
        lines.append(
            f"| {e.id} | {t or '?'} | {_fmt(survey.mean) if survey else 'n/a'} | "
            + (f"{_fmt(eff.mean)} ({_fmt(eff.ci_low)}, {_fmt(eff.ci_high)})" if eff else "n/a")
            + f" | {r.degraded}/{r.n} | {r.verdict} | {r.why} |"
        )
    return lines


def render_report(catalog: Catalog) -> str:
    dims = catalog.dimensions
    n = len(catalog.personas)
    lines = [
        f"# Steering catalog: {catalog.model.name}",
        "",
        f"Every lever measured on {n} held-out personas (statement scores, nats/token; effect = steered minus",
        "unsteered, same persona). A persona's value counts as moved when the change exceeds half the spread",
        "of that value across the unsteered personas.",
        "",
        "## Best lever per value and direction"
        + (" (among levers that move their target in replies and keep them fluent)" if catalog.has_replies else ""),
        "",
        "| value | direction | lever | effect on target (95% CI) | personas moved as intended | specificity | "
        "unparseable | perplexity x |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dim in dims:
        for direction in (1, -1):
            options = [
                e
                for e in catalog.levers
                if e.target == dim
                and e.direction == direction
                and (not catalog.has_replies or (e.replies is not None and e.replies.verdict == "usable"))
            ]
            if not options:
                lines.append(
                    f"| {dim} | {'+' if direction > 0 else '-'} | none usable: no lever moves it in "
                    "replies without degrading them (and holds on held-out prompts, where tested) | | | | | |"
                )
                continue
            best = max(
                options,
                key=lambda e: (
                    direction
                    * (
                        e.replies.effects[dim].mean
                        if e.replies is not None
                        else e.effects[dim].mean
                        if e.effects
                        else 0.0
                    )
                ),
            )
            eff = best.survey_effect(dim)  # guided and vector levers: measured on replies only (n/a here)
            fluency = best.fluency
            lines.append(
                f"| {dim} | {'+' if direction > 0 else '-'} | {best.id} | "
                + (f"{_fmt(eff.mean)} ({_fmt(eff.ci_low)}, {_fmt(eff.ci_high)})" if eff else "n/a")
                + f" | {'n/a' if best.intended_share is None else f'{best.intended_share:.0%}'} | "
                f"{_fmt(best.specificity, 2)} | {'n/a' if fluency is None else f'{fluency.unparseable_rate:.0%}'} | "
                + ("n/a" if fluency is None or fluency.perplexity_ratio is None else f"{fluency.perplexity_ratio:.2f}")
                + " |"
            )
    lines += [
        "",
        "## Roles vs SAE steering (share of personas moved in the intended direction on target)",
        "",
        "| value | role + | role - | best SAE + | best SAE - |",
        "|---|---|---|---|---|",
    ]
    for dim in dims:
        cells = []
        for kind in ("role", "sae"):
            for direction in (1, -1):
                opts = [e for e in catalog.levers if e.kind == kind and e.target == dim and e.direction == direction]
                share = max((e.intended_share or 0.0 for e in opts), default=None)
                cells.append("n/a" if share is None else f"{share:.0%}")
        lines.append(f"| {dim} | " + " | ".join(cells) + " |")
    sae_levers = [e for e in catalog.levers if e.kind == "sae" and e.counts is not None]
    if sae_levers:
        lines += [
            "",
            "## SAE features x values (Table 1 shape): personas increased / decreased / unchanged",
            "",
            "| lever | source | " + " | ".join(dims) + " |",
            "|---|---|" + "---|" * len(dims),
        ]
        for e in sae_levers:
            counts = e.counts or {}
            cells = [f"{counts[d]['increased']}/{counts[d]['decreased']}/{counts[d]['unchanged']}" for d in dims]
            lines.append(f"| {e.id} (target {e.target or '?'}) | {e.source} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Every lever: mean effect per value",
        "",
        "| lever | " + " | ".join(dims) + " |",
        "|---|" + "---|" * len(dims),
    ]
    for e in catalog.levers:
        if e.effects is not None:
            lines.append(f"| {e.id} | " + " | ".join(_fmt(e.effects[d].mean) for d in dims) + " |")
    if catalog.has_replies:
        lines += _replies_section(catalog)
    bf = catalog.baseline_fluency
    lines += [
        "",
        f"Unsteered: perplexity {bf.perplexity:.2f} on the neutral texts, "
        f"{bf.unparseable_rate:.0%} unparseable answers.",
    ]
    return "\n".join(lines) + "\n"
