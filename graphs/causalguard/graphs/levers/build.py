"""Build a model's steering catalog: propose levers, measure them, write ``catalog.json`` into the bundle.

Levers: the inclined/disinclined role instruction for every value; for each value its best contrast
SAE feature at every positive strength and at minus the largest; the paper's " your values" features
at the largest strength. Intermediate results live in the work folder, so reruns resume.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from causalguard.adapters.hf.sae import LoadedSae, load_sae
from causalguard.bundle.catalog import Catalog, build_catalog, save_catalog
from causalguard.bundle.lever import LeverSpec
from causalguard.graphs.levers.candidates import Candidate, find_candidates, residual_norm
from causalguard.graphs.levers.measure import NEUTRAL_TEXTS, MeasureSettings, fluency_costs, measure_effects
from causalguard.graphs.survey.backends import SurveyBackend
from causalguard.models.loaded import LoadedModel
from causalguard.values.inventory import Inventory


@dataclass(frozen=True)
class CatalogSettings:
    strengths: tuple[float, ...] = (0.25, 0.5)
    features_per_value: int = 1
    your_values_features: int = 2
    measure: MeasureSettings = field(default_factory=MeasureSettings)


def propose_levers(
    inventory: Inventory, candidates: list[Candidate], strengths: tuple[float, ...]
) -> tuple[list[LeverSpec], dict[str, str]]:
    levers: list[LeverSpec] = []
    sources: dict[str, str] = {}
    for dim in inventory.dimensions:
        for direction in (1, -1):
            lever = LeverSpec.role(dim, direction)
            levers.append(lever)
            sources[lever.id] = "value_role"
    top = max(strengths)
    for c in candidates:
        chosen = [*strengths, -top] if c.source == "contrast" else [top]
        for s in chosen:
            lever = LeverSpec.sae(c.feature, s, c.target)
            levers.append(lever)
            sources[lever.id] = c.source
    return levers, sources


def build_levers_catalog(
    lm: LoadedModel,
    inventory: Inventory,
    bundle_dir: Path,
    sae_dir: Path | None,
    work_dir: Path,
    settings: CatalogSettings,
    *,
    progress: bool = True,
    backend: SurveyBackend | None = None,
) -> Catalog:
    work_dir.mkdir(parents=True, exist_ok=True)
    sae = load_sae(sae_dir, lm) if sae_dir is not None else None
    candidates: list[Candidate] = []
    norm = 0.0
    if sae is not None:
        cache = work_dir / "candidates.json"
        if cache.exists():
            saved = json.loads(cache.read_text())
            candidates, norm = [Candidate(**c) for c in saved["candidates"]], float(saved["residual_norm"])
        else:
            candidates = find_candidates(
                lm, sae, inventory, per_value=settings.features_per_value, your_values=settings.your_values_features
            )
            norm = residual_norm(lm, sae, NEUTRAL_TEXTS)
            cache.write_text(
                json.dumps({"candidates": [asdict(c) for c in candidates], "residual_norm": norm}, indent=2)
            )
    levers, sources = propose_levers(inventory, candidates, settings.strengths)
    measured = measure_effects(
        lm, inventory, levers, sae, norm, work_dir, settings.measure, progress=progress, backend=backend
    )
    fluency_file = work_dir / "fluency.json"
    if fluency_file.exists():
        fluency = json.loads(fluency_file.read_text())
    else:
        fluency = fluency_costs(lm, inventory, levers, sae, norm, settings.measure)
        fluency_file.write_text(json.dumps(fluency, indent=2))
    sae_doc = None
    if sae is not None and sae_dir is not None:
        try:
            location = str(sae_dir.resolve().relative_to(bundle_dir.resolve()))
        except ValueError:
            location = str(sae_dir.resolve())
        sae_doc = {
            "path": location,
            "hook_name": sae.hook_name,
            "layer": sae.layer,
            "d_sae": sae.d_sae,
            "residual_norm": norm,
            "strength_unit": "median residual-stream norm at the layer",
        }
    catalog = build_catalog(
        model={"name": lm.name, "fingerprint": lm.fingerprint},
        dimensions=inventory.names,
        levers=levers,
        sources=sources,
        measured=measured,
        fluency=fluency,
        sae=sae_doc,
    )
    save_catalog(catalog, bundle_dir)
    return catalog


def extend_catalog(
    lm: LoadedModel,
    inventory: Inventory,
    bundle_dir: Path,
    catalog: Catalog,
    levers: list[LeverSpec],
    sources: dict[str, str],
    work_dir: Path,
    settings: MeasureSettings,
    *,
    progress: bool = True,
    backend: SurveyBackend | None = None,
) -> Catalog:
    """Measure more levers (sweeps, wordings) on the catalog's own personas and add them to it.

    The unsteered personas are scored again in this run; the survey is deterministic, so their scores
    must match the catalog's baseline (checked), and the new levers' effects are comparable with the
    old ones'."""
    known = {e.id for e in catalog.levers}
    new = [lever for lever in levers if lever.id not in known]
    if not new:
        return catalog
    sae, norm = sae_for_catalog(lm, bundle_dir, catalog, new)
    work_dir.mkdir(parents=True, exist_ok=True)
    measured = measure_effects(lm, inventory, new, sae, norm, work_dir, settings, progress=progress, backend=backend)
    if measured["personas"] != catalog.personas:
        raise ValueError(
            f"the catalog was measured on personas {catalog.personas}, these settings give "
            f"{measured['personas']}: use the catalog's persona count and seed"
        )
    for d in catalog.dimensions:
        if abs(measured["baseline"][d]["mean"] - catalog.baseline[d].mean) > 1e-3:
            raise ValueError(
                f"unsteered {d} scores {measured['baseline'][d]['mean']:.4f} here but "
                f"{catalog.baseline[d].mean:.4f} in the catalog: not the same model or survey settings"
            )
    fluency = fluency_costs(lm, inventory, new, sae, norm, settings)
    fluency["none"] = catalog.baseline_fluency.model_dump()
    added = build_catalog(
        model=catalog.model.model_dump(),
        dimensions=catalog.dimensions,
        levers=new,
        sources=sources,
        measured={**measured, "baseline": catalog.model_dump()["baseline"], "noise_threshold": catalog.noise_threshold},
        fluency=fluency,
        sae=catalog.sae.model_dump() if catalog.sae else None,
    )
    extended = catalog.model_copy(update={"levers": [*catalog.levers, *added.levers]})
    save_catalog(extended, bundle_dir)
    return extended


def sae_for_catalog(
    lm: LoadedModel, bundle_dir: Path, catalog: Catalog, levers: Sequence[LeverSpec]
) -> tuple[LoadedSae | None, float]:
    """The catalog's SAE and residual norm when ``levers`` include SAE levers, else ``(None, 0.0)``."""
    if not any(lever.kind == "sae" for lever in levers):
        return None, 0.0
    if catalog.sae is None:
        raise ValueError("SAE levers need a catalog with an SAE")
    return load_sae(_sae_folder(bundle_dir, catalog.sae.path), lm), catalog.sae.residual_norm


def _sae_folder(bundle_dir: Path, location: str) -> Path:
    path = Path(location)
    return path if path.is_absolute() else bundle_dir / path
