"""A guard's configuration with its plans, built and validated in one place (``build_guard_state``).

``ValueGuard`` (local HF models, role and SAE levers) and ``ChatValueGuard`` (any LangChain chat model,
role levers only) both build their state here, so a profile is planned the same way everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from causalguard.adapters.hf.interventions import Intervention
from causalguard.adapters.hf.sae import LoadedSae
from causalguard.adapters.hf.value_adapters import ValueAdapter
from causalguard.adapters.hf.vectors import VectorSet
from causalguard.bundle.catalog import Catalog
from causalguard.bundle.format import Bundle
from causalguard.config.loading import SourcedConfig, check_value_names
from causalguard.config.schema import GuardConfig, ProfileSpec, UpstreamSpec
from causalguard.errors import CausalguardError, ConfigError, Problem
from causalguard.planning.planner import Plan, PlanInfeasibleError, plan_levers, runnable_kinds
from causalguard.runtime.engine_levers import engine_lever_ids
from causalguard.runtime.plan_conditions import plan_interventions
from causalguard.yaml_files import line_of

log = logging.getLogger(__name__)


class UnknownProfileError(CausalguardError, KeyError):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(f"unknown guard profile '{name}'; profiles: {', '.join(known)}")
        self.name = name


@dataclass(frozen=True)
class GuardState:
    """One configuration with its plans, built (and validated) before it is swapped in."""

    config: GuardConfig
    plans: Mapping[str, Plan]
    interventions: Mapping[str, tuple[Intervention, ...]]

    def plan(self, profile: str) -> Plan:
        if profile not in self.plans:
            raise UnknownProfileError(profile, list(self.plans))
        return self.plans[profile]


def bundle_catalog(bundle: Bundle) -> Catalog:
    """The bundle's steering catalog, or a clear error naming the command that makes one."""
    if bundle.catalog is None:
        raise ConfigError.single(
            str(bundle.path),
            "the bundle has no steering catalog (catalog.json)",
            field="bundle",
            hint="run 'causalguard levers measure --bundle FOLDER'",
        )
    return bundle.catalog


def _profile_field(name: str, leaf: str) -> str:
    return leaf if name == "default" else f"profiles.{name}.{leaf}"


def _profile_line(sourced: SourcedConfig, name: str) -> int | None:
    """The config line of a profile's targets (the top-level targets for 'default')."""
    return line_of(sourced.node, ["targets"] if name == "default" else ["profiles", name])


def _plain_plan(
    name: str, refusal: PlanInfeasibleError, bundle: Bundle, config: GuardConfig, local_kinds: Collection[str]
) -> Plan:
    """The unguarded plan a ``serve_plain`` profile gets when the planner refuses it, with the refusal as
    its first reason (``explain`` shows it; ``build_guard_state`` logs it as a warning)."""
    plain = plan_levers(ProfileSpec(), bundle, config.limits, name=name, units=config.units, local_kinds=local_kinds)
    why = str(refusal).splitlines()[0]
    return replace(plain, reasons=(f"served unguarded (on_infeasible: serve_plain): {why}", *plain.reasons))


def _units_switch_note(
    plan: Plan,
    profile: ProfileSpec,
    bundle: Bundle,
    config: GuardConfig,
    local_model: bool,
    sae: LoadedSae | None,
    local_kinds: Collection[str] | None,
    engine_levers: Collection[str] = (),
) -> str | None:
    """When ``units:`` overrides the bundle's default units and that changes what the profile gets, a note
    naming both plans (None when the units are the default, or the plan is the same)."""
    if config.units == "auto" or bundle.catalog is None or (not plan.levers and not profile.targets):
        return None
    default = "replies" if bundle.catalog.has_replies else "survey"
    if config.units == default:
        return None
    try:
        other = plan_levers(
            profile,
            bundle,
            config.limits,
            name=plan.profile,
            sae_available=local_model and sae is not None,
            units="auto",
            local_kinds=local_kinds,
            engine_levers=engine_levers,
        )
    except PlanInfeasibleError as exc:
        return (
            f"units: {config.units} changes this profile's plan: {_lever_list(plan)} in {plan.units} units, where "
            f"{default} units (this bundle's default) refuse it: {str(exc).splitlines()[0]}"
        )
    if [lever.id for lever in other.levers] == [lever.id for lever in plan.levers]:
        return None
    return (
        f"units: {config.units} changes this profile's plan: {_lever_list(plan)} in {plan.units} units, "
        f"{_lever_list(other)} in {default} units (this bundle's default)"
    )


def _lever_list(plan: Plan) -> str:
    return ", ".join(lever.id for lever in plan.levers) if plan.levers else "no levers"


def build_guard_state(
    sourced: SourcedConfig,
    bundle: Bundle,
    *,
    sae: LoadedSae | None,
    local_model: bool = True,
    profiles: Sequence[str] | None = None,
    vectors: VectorSet | None = None,
    adapters: Mapping[str, ValueAdapter] | None = None,
) -> GuardState:
    """Check the config's value names against the catalog and plan every profile (or ``profiles``).

    ``local_model=False`` (a remote chat model): SAE levers are impossible, so a profile asking for them
    is planned with role levers when ``fallback_to_roles`` is set, and refused otherwise."""
    catalog = bundle_catalog(bundle)
    config, where = sourced.config, sourced.where
    check_value_names(config, catalog.dimensions, sourced.path or Path("<config>"), sourced.node)
    plans = {}
    infeasible: dict[str, PlanInfeasibleError] = {}
    # lever kinds that act on activations or logits: only on a local model, and only with their artifacts
    local_kinds = runnable_kinds(
        local_model=local_model,
        sae_loaded=sae is not None,
        vectors_loaded=vectors is not None,
        adapters_loaded=bool(adapters),
    )
    engine_levers = _engine_levers(sourced, catalog) if not local_model else ()
    for name in profiles if profiles is not None else config.profile_names:
        profile = config.profile(name)
        if not local_model and profile.method == "sae":
            if not config.fallback_to_roles:
                raise ConfigError.single(
                    where,
                    f"profile '{name}' asks for SAE levers, which need a local HF model",
                    field="method",
                    hint="wrap a ChatHuggingFaceLocal, use method: role, or set fallback_to_roles: true",
                )
            profile = profile.model_copy(update={"method": "role"})
        try:
            plans[name] = plan_levers(
                profile,
                bundle,
                config.limits,
                name=name,
                sae_available=local_model and sae is not None,
                units=config.units,
                local_kinds=local_kinds,
                engine_levers=engine_levers,
            )
            units_note = _units_switch_note(
                plans[name], profile, bundle, config, local_model, sae, local_kinds, engine_levers
            )
            if units_note is not None:
                plans[name] = replace(plans[name], reasons=(*plans[name].reasons, units_note))
                log.warning("profile %s: %s", name, units_note)
            if not local_model and config.profile(name).method != "role":
                note = (
                    "generation is remote (an upstream server or a LangChain model): SAE levers cannot run "
                    "there, so this profile was planned with role levers only"
                )
                plans[name] = replace(plans[name], reasons=(*plans[name].reasons, note))
        except PlanInfeasibleError as exc:
            if profile.on_infeasible == "error":
                infeasible[name] = exc
                continue
            plans[name] = _plain_plan(name, exc, bundle, config, local_kinds)
            log.warning(
                "profile %s is infeasible and served unguarded (on_infeasible: serve_plain): %s",
                name,
                str(exc).splitlines()[0],
            )
    if infeasible:  # every profile the planner refused, named at once (not only the first)
        if not local_model:
            raise ConfigError(
                [
                    Problem(
                        where,
                        _profile_line(sourced, name),
                        _profile_field(name, "targets"),
                        f"{exc} (remote model: role levers only"
                        + (
                            ", and the upstream's own: upstream.lora_adapters, control_vectors, lora_models)"
                            if engine_levers
                            else ")"
                        ),
                        "change the targets, load the lever on the upstream (upstream.lora_adapters, control_vectors "
                        "or lora_models), or serve "
                        "the model in-process for more lever kinds",
                    )
                    for name, exc in infeasible.items()
                ]
            )
        if len(infeasible) == 1:
            raise next(iter(infeasible.values()))
        raise PlanInfeasibleError(
            f"{len(infeasible)} profiles are infeasible:\n"
            + "\n".join(f"- line {_profile_line(sourced, name) or '?'}: {exc}" for name, exc in infeasible.items()),
            [c for exc in infeasible.values() for c in exc.conflicts],
        )
    for plan in plans.values():
        for warning in plan.warnings:
            log.warning("profile %s: unreachable goal: %s", plan.profile, warning)
    spec = config.upstream if not local_model else None
    for name, plan in plans.items():
        upstream = [_engine_note(lever.id, spec) for lever in plan.levers if lever.id in engine_levers]
        if upstream:
            note = f"applied by the upstream engine: {', '.join(upstream)}"
            plans[name] = replace(plan, reasons=(*plan.reasons, note))
    interventions = {
        name: plan_interventions(plan, sae, catalog, vectors, adapters) if local_model else ()
        for name, plan in plans.items()
    }
    return GuardState(config, plans, interventions)


def _engine_note(lever_id: str, spec: UpstreamSpec | None) -> str:
    if spec is not None and lever_id in spec.control_vectors:
        return f"{lever_id} (the control vector of the upstream at {spec.control_vectors[lever_id]})"
    if spec is not None and lever_id in spec.lora_models:
        return f"{lever_id} (the upstream's adapter model '{spec.lora_models[lever_id]}')"
    index = spec.lora_adapters.index(lever_id) if spec is not None else -1
    return f"{lever_id} (llama-server --lora id {index}, scaled per request)"


def _engine_levers(sourced: SourcedConfig, catalog: Catalog) -> tuple[str, ...]:
    """The levers the proxy-mode upstreams apply themselves: the adapters llama-server loaded
    (``upstream.lora_adapters``) and the vector levers of upstreams started with their control vectors
    (``upstream.control_vectors``), each checked to be a lever of that kind in the catalog: an error names
    the entry's line otherwise."""
    spec = sourced.config.upstream
    if spec is None:
        return ()
    kinds = {lever.id: lever.kind for lever in catalog.levers}
    listed: list[tuple[str, int | str, str, str]] = [
        ("lora_adapters", index, lever_id, "adapter") for index, lever_id in enumerate(spec.lora_adapters)
    ]
    listed += [("control_vectors", lever_id, lever_id, "vector") for lever_id in spec.control_vectors]
    listed += [("lora_models", lever_id, lever_id, "adapter") for lever_id in spec.lora_models]
    strength = {lever.id: lever.strength for lever in catalog.levers}
    for section, key, lever_id, kind in listed:
        if kinds.get(lever_id) != kind:
            what = "not a lever of the bundle's catalog" if lever_id not in kinds else f"a {kinds[lever_id]} lever"
            raise ConfigError.single(
                sourced.where,
                f"{lever_id!r} is {what}; {section} lists {kind} levers",
                line=line_of(sourced.node, ["upstream", section, key]),
                field=f"upstream.{section}.{key}",
                hint=f"list the {kind} levers 'causalguard levers export' wrote for this engine",
            )
        if section == "lora_models" and strength[lever_id] != 1:
            raise ConfigError.single(
                sourced.where,
                f"{lever_id!r} runs its adapter at scale {strength[lever_id]:g}; a server that picks adapters by "
                "model name applies them at scale 1",
                line=line_of(sourced.node, ["upstream", section, key]),
                field=f"upstream.{section}.{key}",
                hint="list the same adapter's lever at scale 1 (id ending ':s1')",
            )
    return engine_lever_ids(spec)
