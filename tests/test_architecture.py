"""The layering rule of ARCHITECTURE.md, checked on every module-level import of the package.

Layers, bottom to top (a module may import its own layer and the layers below it):

1. foundation: errors, YAML/JSONL reading, values, roles, models, configs, metrics, steering conditions
2. mechanics: scoring methods, HF hooks and SAEs, the reply judge and reply quality (judging),
   guarded generation (runtime.generation, runtime.conversation)
3. artifacts: what the offline side ships and the runtime reads (bundle, graph, effects, catalog, levers)
4. offline: surveys and their quality reports, graph building, SAE training, lever measurement, behaviour runs
5. serving: planning, runtime, server, LangChain adapters; may NOT import the offline layer
6. entry points: commands, cli, the package root (lazy exports)

Imports inside functions (lazy imports of heavy optional parts) are not module-level and not checked.
"""

import ast
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).parent.parent
SOURCES = {"guard/causalguard": "causalguard", "adapters/causalguard/adapters": "causalguard.adapters",
           "graphs/causalguard/graphs": "causalguard.graphs"}

FOUNDATION, MECHANICS, ARTIFACTS, OFFLINE, SERVING, ENTRY = range(1, 7)
LAYER_OF = {  # the most specific prefix wins
    "causalguard.errors": FOUNDATION, "causalguard.artifacts": FOUNDATION, "causalguard.yaml_files": FOUNDATION,
    "causalguard.paths": FOUNDATION,
    "causalguard.values": FOUNDATION, "causalguard.roles": FOUNDATION, "causalguard.models": FOUNDATION,
    "causalguard.config": FOUNDATION, "causalguard.metrics": FOUNDATION, "causalguard.metrics_reference": FOUNDATION,
    "causalguard.steering_conditions": FOUNDATION, "causalguard.jsonl_files": FOUNDATION,
    "causalguard.run_records": FOUNDATION,
    "causalguard.scoring": MECHANICS, "causalguard.adapters.hf": MECHANICS, "causalguard.judging": MECHANICS,
    "causalguard.runtime.generation": MECHANICS, "causalguard.runtime.conversation": MECHANICS,
    "causalguard.runtime.guidance": MECHANICS, "causalguard.runtime.batcher": MECHANICS,
    "causalguard.runtime.prefix_cache": MECHANICS,
    "causalguard.method_choice": MECHANICS,
    "causalguard.bundle": ARTIFACTS,
    "causalguard.graphs": OFFLINE,
    "causalguard.planning": SERVING, "causalguard.runtime": SERVING, "causalguard.server": SERVING,
    "causalguard.adapters.langchain": SERVING,
    "causalguard.commands": ENTRY, "causalguard.cli": ENTRY,
    "causalguard.graphs.behaviour.validate": ENTRY,  # plans (serving) measured by reply runs (offline)
}
# Offline code may generate replies exactly as the guard serves them (that is the point of it).
OFFLINE_MAY_USE = ("causalguard.runtime.generation", "causalguard.runtime.conversation", "causalguard.runtime.guidance",
                   "causalguard.runtime.batcher", "causalguard.runtime.prefix_cache")


def layer(module: str) -> int:
    if module == "causalguard":
        return ENTRY
    best = max((p for p in LAYER_OF if module == p or module.startswith(p + ".")), key=len, default=None)
    assert best is not None, f"{module} has no layer: add it to LAYER_OF and ARCHITECTURE.md"
    return LAYER_OF[best]


def _modules() -> list[tuple[str, ast.Module]]:
    """(module name, parsed source) for every module of the package's three source roots."""
    out = []
    for folder, package in SOURCES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            out.append((".".join((package, *parts)).removesuffix(".__init__"),
                        ast.parse(path.read_text(encoding="utf-8"))))
    return out


def _causalguard_imports(name: str, nodes: Sequence[ast.AST]) -> list[tuple[str, str, int]]:
    out = []
    for n in nodes:
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("causalguard"):
            out.append((name, n.module, n.lineno))
        elif isinstance(n, ast.Import):
            out += [(name, a.name, n.lineno) for a in n.names if a.name.startswith("causalguard")]
    return out


def module_imports() -> list[tuple[str, str, int]]:
    """(importer, imported, line) for every module-level causalguard import (TYPE_CHECKING blocks count too)."""
    out = []
    for name, tree in _modules():
        top = [n for node in tree.body for n in (node.body if isinstance(node, ast.If) else [node])]
        out += _causalguard_imports(name, top)
    return out


def test_every_module_level_import_follows_the_layers() -> None:
    edges = module_imports()
    assert len(edges) > 200  # the scan sees the whole package
    bad = []
    for src, dst, line in edges:
        s, d = layer(src), layer(dst)
        if s == SERVING and d == OFFLINE:
            bad.append(f"{src}:{line} imports {dst}: serving code must not import offline code")
        elif d > s and not (s == OFFLINE and dst in OFFLINE_MAY_USE):
            bad.append(f"{src}:{line} (layer {s}) imports {dst} (layer {d}): an import runs up the layers")
    assert not bad, "\n".join(bad)


def _is_serving(module: str) -> bool:
    best = max((p for p in LAYER_OF if module == p or module.startswith(p + ".")), key=len, default=None)
    return best is not None and LAYER_OF[best] == SERVING


def all_imports(package_prefix: str) -> list[tuple[str, str, int]]:
    """(importer, imported, line) for every causalguard import, at any depth, in serving modules and in
    modules under the prefix."""
    return [edge for name, tree in _modules() if name.startswith(package_prefix) or _is_serving(name)
            for edge in _causalguard_imports(name, list(ast.walk(tree)))]


def test_serving_and_the_artifact_layer_never_import_the_offline_package_not_even_lazily() -> None:
    edges = all_imports("causalguard.bundle")
    assert any(src.startswith("causalguard.bundle") for src, _, _ in edges)
    bad = [f"{src}:{line} imports {dst}" for src, dst, line in edges if dst.startswith("causalguard.graphs")]
    assert not bad, "\n".join(bad)


def test_the_serving_side_runs_without_the_offline_package(tmp_path: Path) -> None:
    """Plan and serve with the shipped bundle while importing any causalguard.graphs module fails."""
    import subprocess
    import sys

    code = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.startswith("causalguard.graphs."):
            raise ImportError(f"offline module {name} imported by the serving side")
        return None
sys.meta_path.insert(0, Block())
from causalguard.bundle.format import load_bundle, resolve_bundle_dir
from causalguard.config.loading import read_guard_config
from causalguard.runtime.state import build_guard_state
import causalguard.server.app, causalguard.server.routes, causalguard.runtime.value_guard
import causalguard.adapters.langchain.guarded
bundle = load_bundle(resolve_bundle_dir("builtin", "smollm2-135m-instruct"))
state = build_guard_state(read_guard_config(sys.argv[1]), bundle, sae=None)
assert state.plans["default"].levers, state.plans
assert not [m for m in sys.modules if m.startswith("causalguard.graphs.")], "the offline package was imported"
print("ok")
"""
    config = tmp_path / "guard.yaml"
    config.write_text("units: survey\ntargets:\n  stimulation: {direction: increase}\nmethod: role\n")
    result = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


def test_the_rule_catches_a_violation() -> None:
    assert layer("causalguard.runtime.value_guard") == SERVING
    assert layer("causalguard.graphs.levers.measure") == OFFLINE
    assert layer("causalguard.bundle.catalog") == ARTIFACTS
    assert layer("causalguard.bundle.graph") == ARTIFACTS and layer("causalguard.graphs.causal.build") == OFFLINE


def test_the_root_exports_the_public_api_lazily() -> None:
    import subprocess
    import sys

    code = ("import sys, causalguard; assert 'torch' not in sys.modules and 'transformers' not in sys.modules; "
            "from causalguard import ValueGuard, load_model; assert ValueGuard.__module__.endswith('value_guard'); "
            "from causalguard.adapters.langchain import ChatValueGuard; "
            "assert 'ValueGuard' in dir(causalguard)\n"
            "try:\n    causalguard.nope\nexcept AttributeError:\n    pass\nelse:\n    raise SystemExit(1)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
