"""The layering rule of ARCHITECTURE.md, checked on every module-level import of the package.

The rule is stated once, in ARCHITECTURE.md's "Layers" table: a module may import its own layer and the
layers below it. This test reads the table's modules column and the paragraph of its one exception.
Imports inside functions (lazy imports of heavy optional parts) are not module-level and not checked.
"""

import ast
import re
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).parent.parent
SOURCES = {
    "guard/causalguard": "causalguard",
    "adapters/causalguard/adapters": "causalguard.adapters",
    "graphs/causalguard/graphs": "causalguard.graphs",
}
FOUNDATION, MECHANICS, ARTIFACTS, OFFLINE, SERVING, ENTRY = range(1, 7)


def read_layer_table(text: str) -> tuple[dict[str, int], tuple[str, ...]]:
    """(module prefix -> layer, the modules the offline layer may use) from ARCHITECTURE.md's Layers section."""
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    layer_of: dict[str, int] = {}
    for row in re.findall(r"^\| (\d) [^|]*\|[^|]*\|(.*)\|$", section, flags=re.M):
        for module in re.findall(r"`(causalguard[a-z_.]*)`", row[1]):
            assert module not in layer_of, f"ARCHITECTURE.md names {module} in two layers"
            layer_of[module] = int(row[0])
    exception = section.split("One exception", 1)[1].split("\n\n", 1)[0]
    return layer_of, tuple(re.findall(r"`(causalguard[a-z_.]*)`", exception))


LAYER_OF, OFFLINE_MAY_USE = read_layer_table((ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8"))


def layer(module: str) -> int:
    if module == "causalguard":
        return LAYER_OF["causalguard"]
    best = max(
        (p for p in LAYER_OF if p != "causalguard" and (module == p or module.startswith(p + "."))),
        key=len,
        default=None,
    )
    assert best is not None, f"{module} has no layer: add it to ARCHITECTURE.md's Layers table"
    return LAYER_OF[best]


def _modules() -> list[tuple[str, ast.Module]]:
    """(module name, parsed source) for every module of the package's three source roots."""
    out = []
    for folder, package in SOURCES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            out.append(
                (".".join((package, *parts)).removesuffix(".__init__"), ast.parse(path.read_text(encoding="utf-8")))
            )
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
    best = max(
        (p for p in LAYER_OF if p != "causalguard" and (module == p or module.startswith(p + "."))),
        key=len,
        default=None,
    )
    return best is not None and LAYER_OF[best] == SERVING


def all_imports(package_prefix: str) -> list[tuple[str, str, int]]:
    """(importer, imported, line) for every causalguard import, at any depth, in serving modules and in
    modules under the prefix."""
    return [
        edge
        for name, tree in _modules()
        if name.startswith(package_prefix) or _is_serving(name)
        for edge in _causalguard_imports(name, list(ast.walk(tree)))
    ]


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


def test_the_layer_table_is_read_from_architecture_md() -> None:
    assert set(LAYER_OF.values()) == {FOUNDATION, MECHANICS, ARTIFACTS, OFFLINE, SERVING, ENTRY}
    assert LAYER_OF["causalguard.graphs"] == OFFLINE and LAYER_OF["causalguard.bundle"] == ARTIFACTS
    assert "causalguard.runtime.generation" in OFFLINE_MAY_USE and len(OFFLINE_MAY_USE) == 5
    table, _ = read_layer_table(
        "## Layers\n\n| 2 x | y | `causalguard.a`, `causalguard.b.c` |\n"
        "\nOne exception: `causalguard.a`.\n\n## Next\n| 5 z | y | `causalguard.d` |\n"
    )
    assert table == {"causalguard.a": 2, "causalguard.b.c": 2}


def test_the_rule_catches_a_violation() -> None:
    assert layer("causalguard.runtime.value_guard") == SERVING
    assert layer("causalguard.graphs.levers.measure") == OFFLINE
    assert layer("causalguard.bundle.catalog") == ARTIFACTS
    assert layer("causalguard.bundle.graph") == ARTIFACTS and layer("causalguard.graphs.causal.build") == OFFLINE


def test_the_root_exports_the_public_api_lazily() -> None:
    import subprocess
    import sys

    code = (
        "import sys, causalguard; assert 'torch' not in sys.modules and 'transformers' not in sys.modules; "
        "from causalguard import ValueGuard, load_model; assert ValueGuard.__module__.endswith('value_guard'); "
        "from causalguard.adapters.langchain import ChatValueGuard; "
        "assert 'ValueGuard' in dir(causalguard)\n"
        "try:\n    causalguard.nope\nexcept AttributeError:\n    pass\nelse:\n    raise SystemExit(1)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
