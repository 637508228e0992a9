"""mkdocs hook: one source tree for the API reference.

causalguard is one package in three source roots (guard/causalguard, adapters/causalguard/adapters,
graphs/causalguard/graphs; see ARCHITECTURE.md). mkdocstrings reads sources statically and expects one
tree per package, so before the build this hook links the three roots into ``build/docs-src/causalguard``
(symlinks, nothing copied), which mkdocs.yml names as the handler's path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MERGED = ROOT / "build" / "docs-src" / "causalguard"


def link_sources() -> Path:
    """(Re)build the merged tree and return the folder that holds ``causalguard``."""
    MERGED.mkdir(parents=True, exist_ok=True)
    wanted = {p.name: p for p in (ROOT / "guard" / "causalguard").iterdir() if p.name != "__pycache__"}
    wanted["adapters"] = ROOT / "adapters" / "causalguard" / "adapters"
    wanted["graphs"] = ROOT / "graphs" / "causalguard" / "graphs"
    for entry in MERGED.iterdir():
        if entry.is_symlink() and (entry.name not in wanted or entry.resolve() != wanted[entry.name]):
            entry.unlink()
    for name, target in wanted.items():
        link = MERGED / name
        if not link.is_symlink():
            link.symlink_to(target)
    return MERGED.parent


def on_startup(**kwargs: Any) -> None:
    link_sources()


def on_config(config: Any) -> Any:
    link_sources()
    return config
