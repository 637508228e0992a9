"""The bundle format (schema ``causalguard.bundle/1``), documented in docs/formats.md (Bundle format).

A bundle folder holds:
  bundle.json          everything below, validated on load
  effects.safetensors  total-effect matrices: ``total`` (n, n), ``class_low``/``class_high`` (spread over
                       the DAGs of the equivalence class), ``bootstrap_total`` (b, n, n)
  graph.graphml        the graph for other tools (edge attribute ``kind``, ``stability``)
  graph.svg            a picture of it
Every file's SHA-256 is recorded in bundle.json and checked on load (``bundle/integrity.py``).
No pickle anywhere: JSON and safetensors only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from causalguard.artifacts import (
    BUNDLE_FILE,
    BUNDLE_SCHEMA,
    EFFECTS_FILE,
    GRAPHML_FILE,
    REPLY_GRAPH_DIR,
    SAE_CONFIG,
    SVG_FILE,
)
from causalguard.bundle.behaviour import BehaviourSummary, load_behaviour
from causalguard.bundle.catalog import Catalog, load_catalog
from causalguard.bundle.effects import EffectModel
from causalguard.bundle.graph import ValueGraph
from causalguard.bundle.integrity import seal_bundle, verify_bundle
from causalguard.errors import CausalguardError, ConfigError
from causalguard.yaml_files import problems_from_validation

MAX_TOTAL_EFFECT = 100.0  # a value's change per unit change of another, on scores in [-1, 1]: far beyond any fit


class BundleMismatchError(CausalguardError):
    """The bundle was built for other weights than the loaded model's."""


class _EdgeDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str
    target: str
    kind: str = Field(pattern="^(directed|undirected|bidirected)$")
    stability: float | None = None
    orientation: dict[str, float] = Field(default_factory=dict)


class _GraphDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nodes: list[str] = Field(min_length=2)
    edges: list[_EdgeDoc]


class BundleDoc(BaseModel):
    """The validated content of bundle.json."""

    model_config = ConfigDict(extra="forbid")

    schema_: str = Field(alias="schema", pattern=r"^causalguard\.bundle/1$")
    created: str
    producer: dict[str, Any]
    model: dict[str, Any]
    inventory: dict[str, Any]
    survey: dict[str, Any]
    discovery: dict[str, Any]
    graph: _GraphDoc
    effects: dict[str, Any]
    evaluation: dict[str, Any] = Field(min_length=1)
    human_comparison: dict[str, Any] = Field(min_length=1)
    extras: dict[str, Any] = Field(default_factory=dict)
    integrity: dict[str, Any] | None = None  # the files' hashes (bundle/integrity.py)


@dataclass
class Bundle:
    doc: dict[str, Any]
    graph: ValueGraph
    effects: EffectModel
    class_low: np.ndarray
    class_high: np.ndarray
    path: Path | None = None
    catalog: Catalog | None = None  # the steering catalog (catalog.json), when levers were measured
    behaviour: BehaviourSummary | None = None  # levers measured on replies (behaviour.json), when reported
    reply_graph: Bundle | None = None  # the value graph on replies (reply_graph/, 'graph build --replies')

    @property
    def sae_dir(self) -> Path | None:
        """The SAE folder the catalog's SAE levers use, if any."""
        if self.catalog is None or self.catalog.sae is None:
            return None
        location = Path(self.catalog.sae.path)
        return location if location.is_absolute() or self.path is None else self.path / location

    @property
    def vectors_dir(self) -> Path | None:
        """The bundle's steering vectors (``vectors/``), when they were extracted."""
        if self.path is None or not (self.path / "vectors").is_dir():
            return None
        return self.path / "vectors"

    @property
    def adapters_dir(self) -> Path | None:
        """The bundle's value adapters (``adapters/``, one PEFT folder each), when they were trained."""
        if self.path is None or not (self.path / "adapters").is_dir():
            return None
        return self.path / "adapters"

    @property
    def model_name(self) -> str:
        return str(self.doc["model"].get("name", "?"))

    @property
    def fingerprint(self) -> str:
        return str(self.doc["model"].get("fingerprint", ""))

    @property
    def schema(self) -> str:
        return str(self.doc.get("schema", BUNDLE_SCHEMA))

    @property
    def inventory_name(self) -> str | None:
        """The inventory the survey used (a shipped name or a file path), when recorded."""
        name = (self.doc.get("inventory") or {}).get("name")
        return str(name) if name else None


def save_bundle(bundle: Bundle, folder: Path) -> Path:
    from safetensors.numpy import save_file

    from causalguard.bundle.svg import render_svg

    folder.mkdir(parents=True, exist_ok=True)
    doc = dict(bundle.doc)
    doc["graph"] = bundle.graph.to_json()
    BundleDoc.model_validate(doc)  # never write what we could not read back
    tensors = {"total": bundle.effects.total, "class_low": bundle.class_low, "class_high": bundle.class_high}
    if bundle.effects.samples.size:
        tensors["bootstrap_total"] = bundle.effects.samples
    save_file(
        {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()},
        str(folder / EFFECTS_FILE),
        metadata={"schema": BUNDLE_SCHEMA, "nodes": json.dumps(list(bundle.graph.nodes))},
    )
    (folder / BUNDLE_FILE).write_text(json.dumps(doc, indent=2) + "\n")
    nx.write_graphml(_graphml(bundle.graph), folder / GRAPHML_FILE)
    (folder / SVG_FILE).write_text(render_svg(bundle.graph, title=f"{bundle.model_name}: causal value graph"))
    seal_bundle(folder)
    bundle.path = folder
    return folder


def _graphml(graph: ValueGraph) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(graph.nodes)
    for e in graph.edges:
        g.add_edge(e.source, e.target, kind=e.kind, stability=-1.0 if e.stability is None else e.stability)
    return g


def load_bundle(folder: Path, *, expected_fingerprint: str | None = None, force: bool = False) -> Bundle:
    """Load and validate a bundle folder.

    Every file is checked against its schema and the content hashes ``bundle.json`` records, numbers
    must be finite and in range, and the files must agree with each other.

    Args:
        folder: The bundle folder (``bundle.json`` and the files beside it).
        expected_fingerprint: The weights fingerprint of the model that will use the bundle.
        force: Accept a bundle built for other weights (a different fingerprint).

    Returns:
        The bundle, with its catalog, behaviour record, judge and vectors where present.

    Raises:
        ConfigError: A file is missing, unreadable, malformed, out of range or altered; the message names
            the file and field.
        BundleMismatchError: The bundle was built for other weights and ``force`` is off.

    Example:
        >>> bundle = load_bundle(resolve_bundle_dir("builtin", "smollm2-135m-instruct"))  # doctest: +SKIP
    """
    path = folder / BUNDLE_FILE
    if not path.exists():
        raise ConfigError.single(
            str(folder), f"not a causalguard bundle (no {BUNDLE_FILE})", hint="build one with 'causalguard graph build'"
        )
    data = path.read_bytes()
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError.single(
            str(path),
            f"not UTF-8 text (byte {exc.start})",
            hint="bundle.json is written by 'causalguard graph build'; rebuild it",
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError.single(str(path), f"invalid JSON: {exc.msg}", line=exc.lineno) from None
    except RecursionError:
        raise ConfigError.single(str(path), "JSON nested too deeply", hint="rebuild the bundle") from None
    if not isinstance(raw, dict):
        raise ConfigError.single(str(path), "expected a JSON object", hint="rebuild the bundle")
    verify_bundle(folder, data, raw)
    schema = raw.get("schema")
    if schema != BUNDLE_SCHEMA:
        raise ConfigError.single(
            str(path),
            f"unsupported bundle schema {schema!r}",
            field="schema",
            hint=f"this causalguard reads {BUNDLE_SCHEMA}; rebuild the bundle",
        )
    try:
        BundleDoc.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(exc, BundleDoc, str(path), None)) from None
    if expected_fingerprint and raw["model"].get("fingerprint") != expected_fingerprint and not force:
        raise BundleMismatchError(
            f"bundle {folder} was built for weights {raw['model'].get('fingerprint')} "
            f"({raw['model'].get('name')}), but the loaded model is {expected_fingerprint}; "
            "its graph and effects may not hold. Pass force=True (--force) to use it anyway"
        )
    try:
        graph = ValueGraph.from_json(raw["graph"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError.single(
            str(path),
            f"the graph is malformed: {exc}",
            field="graph",
            hint="rebuild the bundle with 'causalguard graph build'",
        ) from None
    tensors = _effect_tensors(folder / EFFECTS_FILE, len(graph.nodes))
    samples = tensors.get("bootstrap_total", np.zeros((0, len(graph.nodes), len(graph.nodes))))
    effects = EffectModel(graph.nodes, tensors["total"].astype(float), samples.astype(float))
    catalog = load_catalog(folder)
    if catalog is not None and list(catalog.dimensions) != list(graph.nodes):
        raise ConfigError.single(
            str(folder / "catalog.json"),
            f"the catalog's values {catalog.dimensions} are not the graph's {list(graph.nodes)}",
            field="dimensions",
            hint="measure the catalog for this bundle: 'causalguard levers measure'",
        )
    measured_on = catalog.model.fingerprint if catalog is not None else ""
    built_on = str(raw["model"].get("fingerprint") or "")
    if measured_on and built_on and measured_on != built_on:
        raise ConfigError.single(
            str(folder / "catalog.json"),
            f"the catalog was measured on weights {measured_on}, the bundle's graph on {built_on}",
            field="model.fingerprint",
            hint="measure the catalog with the bundle's model: 'causalguard levers measure'",
        )
    reply_dir = folder / REPLY_GRAPH_DIR  # discovered on the same model's replies: the same weights
    reply_graph = (
        load_bundle(reply_dir, expected_fingerprint=built_on or None, force=force)
        if (reply_dir / BUNDLE_FILE).is_file()
        else None
    )
    if reply_graph is not None and list(reply_graph.graph.nodes) != list(graph.nodes):
        raise ConfigError.single(
            str(reply_dir / BUNDLE_FILE),
            f"the reply graph's values {list(reply_graph.graph.nodes)} are not the bundle's {list(graph.nodes)}",
            field="graph.nodes",
            hint="rebuild it: 'causalguard graph build MATRIX --replies --out BUNDLE/reply_graph'",
        )
    bundle = Bundle(
        raw,
        graph,
        effects,
        tensors["class_low"],
        tensors["class_high"],
        folder,
        catalog,
        load_behaviour(folder),
        reply_graph,
    )
    if catalog is not None and bundle.sae_dir is not None:
        _check_sae_features(catalog, bundle.sae_dir)
    return bundle


def _check_sae_features(catalog: Catalog, sae_dir: Path) -> None:
    """Every SAE lever's feature exists in the bundle's SAE (its cfg.json's d_sae)."""
    cfg_path = sae_dir / SAE_CONFIG
    try:
        d_sae = json.loads(cfg_path.read_text(encoding="utf-8")).get("d_sae")
    except (OSError, ValueError, AttributeError):
        return  # the SAE loader reports a damaged cfg.json with its own clear error when it is used
    if not isinstance(d_sae, int):
        return
    for k, lever in enumerate(catalog.levers):
        if lever.kind == "sae" and lever.feature is not None and lever.feature >= d_sae:
            raise ConfigError.single(
                str(sae_dir.parent / "catalog.json"),
                f"lever {lever.id} steers feature {lever.feature}, but the SAE has {d_sae} features",
                field=f"levers[{k}].feature",
                hint="measure the catalog with this bundle's SAE: 'causalguard levers measure'",
            )


def _effect_tensors(path: Path, n: int) -> dict[str, np.ndarray]:
    """``effects.safetensors``, checked: readable, every tensor present, of its shape and finite."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    hint = "rebuild the bundle with 'causalguard graph build'"
    try:
        tensors = load_file(str(path))
    except FileNotFoundError:
        raise ConfigError.single(str(path), "missing", hint=hint) from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConfigError.single(str(path), f"not a readable safetensors file ({exc})", hint=hint) from None
    shapes: dict[str, tuple[int, ...]] = {"total": (n, n), "class_low": (n, n), "class_high": (n, n)}
    for name in shapes:
        if name not in tensors:
            raise ConfigError.single(str(path), f"tensor {name!r} is missing", field=name, hint=hint)
    if "bootstrap_total" in tensors:
        shapes["bootstrap_total"] = (tensors["bootstrap_total"].shape[0], n, n)
    for name, shape in shapes.items():
        tensor = tensors[name]
        if tuple(tensor.shape) != shape:
            raise ConfigError.single(
                str(path),
                f"tensor {name!r} has shape {tuple(tensor.shape)}, expected {shape} for {n} values",
                field=name,
                hint=hint,
            )
        if not np.isfinite(tensor).all():
            raise ConfigError.single(str(path), f"tensor {name!r} holds NaN or infinite numbers", field=name, hint=hint)
        if tensor.size and float(np.abs(tensor).max()) > MAX_TOTAL_EFFECT:
            raise ConfigError.single(
                str(path),
                f"tensor {name!r} holds an effect of {float(np.abs(tensor).max()):.3g}"
                f" value units per unit change, beyond any fitted effect (|x| <= "
                f"{MAX_TOTAL_EFFECT:g})",
                field=name,
                hint=hint,
            )
    return tensors


def resolve_bundle_dir(where: str | Path, model_name: str, base: Path | None = None) -> Path:
    """A config's ``bundle``: 'builtin' (the model's shipped bundle), or a folder, relative to ``base``."""
    if str(where) == "builtin":
        return shipped_bundle_dir(model_name)
    folder = Path(where)
    return folder if folder.is_absolute() or base is None else base / folder


def shipped_bundle_dir(model_name: str) -> Path:
    """The bundle shipped inside the package for an embedded model (package data of ``causalguard.graphs``,
    located without importing the offline package)."""
    from importlib.util import find_spec

    spec = find_spec("causalguard.graphs")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ConfigError.single(
            "causalguard.graphs",
            "the package holding the shipped bundles is not installed",
            field="bundle",
            hint="reinstall causalguard, or give a bundle folder",
        )
    folder = Path(locations[0]) / model_name
    if not (folder / BUNDLE_FILE).exists():
        shipped = sorted(p.parent.name for p in folder.parent.glob(f"*/{BUNDLE_FILE}"))
        raise ConfigError.single(
            str(folder),
            f"no shipped bundle for model '{model_name}'",
            field="bundle",
            hint=f"shipped: {', '.join(shipped)}; or give a bundle folder",
        )
    return folder
