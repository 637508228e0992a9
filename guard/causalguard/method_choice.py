"""The default scoring method per model, chosen from measured quality figures and stored with reasons."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

FALLBACK_METHOD = "statement"


def _choices_path() -> Path:
    return Path(str(resources.files("causalguard").joinpath("data", "method_choices.json")))


def stored_choice(model_name: str) -> dict[str, Any] | None:
    """The stored choice for a model (``{"method": ..., "reasons": ...}``), or None."""
    data = json.loads(_choices_path().read_text())
    choice = data.get("models", {}).get(model_name)
    return dict(choice) if choice else None


def default_method(model_name: str) -> str:
    """The stored method for ``model_name``, else the statement method (it works on any causal LM)."""
    choice = stored_choice(model_name)
    return str(choice["method"]) if choice else FALLBACK_METHOD


def choose_method(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Pick the method with the best validity; within 0.05 validity, the better median alpha wins.

    ``reports`` maps method name to its quality report. Returns the choice with its reasons.
    """
    if not reports:
        raise ValueError("no quality reports to choose from")

    def key(name: str) -> tuple[float, float]:
        summary = reports[name]["summary"]
        return (summary.get("validity") or 0.0, summary.get("median_alpha") or 0.0)

    ranked = sorted(reports, key=lambda n: key(n), reverse=True)
    best = ranked[0]
    for challenger in ranked[1:]:
        if key(best)[0] - key(challenger)[0] <= 0.05 and key(challenger)[1] > key(best)[1]:
            best = challenger
    figures = {n: {"validity": key(n)[0], "median_alpha": key(n)[1]} for n in reports}
    reasons = (
        f"'{best}' has validity {key(best)[0]:.3f} and median alpha {key(best)[1]:.3f}; "
        + "; ".join(
            f"'{n}': validity {v['validity']:.3f}, alpha {v['median_alpha']:.3f}"
            for n, v in figures.items()
            if n != best
        )
        + ". Rule: highest validity (share of expected directions met by value roles and anchors); "
        "within 0.05 validity, the higher median Cronbach's alpha."
    )
    return {"method": best, "reasons": reasons, "figures": figures}


def store_choice(model_name: str, choice: dict[str, Any], path: Path | None = None) -> Path:
    target = path or _choices_path()
    data = json.loads(target.read_text()) if target.exists() else {"models": {}}
    data.setdefault("models", {})[model_name] = choice
    target.write_text(json.dumps(data, indent=2) + "\n")
    return target
