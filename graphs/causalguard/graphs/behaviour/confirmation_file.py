"""``confirmation.json``: what ``behaviour confirm`` measured, and how it rewrites a catalog's levers.

The file holds one row per confirmed lever (its effects on every value over fresh reply pairs, its
reply quality, the screening effect that selected it, the verdict, and the ``run`` it came from);
rows from separate runs accumulate. ``confirmed_catalog`` applies rows to a catalog: the confirmation's
effects replace the screening's, and the verdict is decided on them. Both ``behaviour confirm`` and
``behaviour report`` (which re-attaches screening effects) apply the file, so a confirmation holds
whichever ran last.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from causalguard.bundle.catalog import Catalog, Interval, LeverEntry
from causalguard.errors import ConfigError
from causalguard.graphs.behaviour.second_judge import opposes, sees
from causalguard.run_records import read_json_object

CONFIRMATION_FILE = "confirmation.json"
_QUALITY_FIELDS = ("degraded", "n", "rate", "p_value", "is_degraded")


def screening_of(lever: LeverEntry) -> Interval:
    """The target effect that selected the lever: kept from an earlier confirmation, else the report's."""
    assert lever.replies is not None and lever.target is not None
    return lever.replies.screening or lever.replies.effects[lever.target]


def confirmed_catalog(catalog: Catalog, rows: dict[str, dict[str, Any]]) -> Catalog:
    """The catalog with each confirmed lever's reply effects replaced by the confirmation's and its verdict
    decided on them: ``usable`` only when the confirmation moves the target beyond noise the intended
    way (95% t-interval) without degrading replies, and, where the row has a ``second_judge``, only when
    that judge also moves the target the intended way (95% t-interval), and no judge of the row's
    ``check_judges`` moves it significantly the wrong way."""
    levers = []
    for lever in catalog.levers:
        row = rows.get(lever.id)
        if row is None or lever.replies is None or lever.target is None:
            levers.append(lever)
            continue
        effects = {d: Interval(**row["effects"][d]) for d in catalog.dimensions}
        target = effects[lever.target]
        moved = target.ci_low > 0 if lever.direction > 0 else target.ci_high < 0
        q = row["quality"]
        screening = screening_of(lever)
        figures = (
            f"screening {screening.mean:+.2f} ({screening.n} pairs), confirmation {target.mean:+.2f} "
            f"(95% CI {target.ci_low:+.2f} .. {target.ci_high:+.2f}, {target.n} fresh pairs)"
        )
        second = row.get("second_judge")
        seen = True
        if second is not None:
            t2 = second["target"]
            seen = sees(t2, lever.direction)
            figures += f"; second judge ({_judge_name(second)}) {_interval_text(t2)}"
        opposed = []
        for check in row.get("check_judges", []):
            figures += f"; check judge ({_judge_name(check)}) {_interval_text(check['target'])}"
            if opposes(check["target"], lever.direction):
                opposed.append(_judge_name(check))
        if q["is_degraded"]:
            verdict, why = "degrades_replies", f"{figures}; {q['degraded']}/{q['n']} confirmation replies degraded"
        elif not moved:
            verdict, why = "no_target_effect", f"{figures}: did not replicate"
        elif not seen:
            verdict, why = "no_target_effect", f"{figures}: second judge: not seen"
        elif opposed:
            verdict, why = "no_target_effect", f"{figures}: check judge ({', '.join(opposed)}): the wrong way"
        else:
            verdict, why = "usable", f"{figures}: replicated"
        replies = lever.replies.model_copy(
            update={
                "effects": effects,
                "moves_target_as_intended": moved,
                "degraded": q["degraded"],
                "n": q["n"],
                "degraded_rate": q["rate"],
                "p_value": q["p_value"],
                "degrades_replies": q["is_degraded"],
                "verdict": verdict,
                "why": why,
                "screening": screening,
            }
        )
        levers.append(lever.model_copy(update={"replies": replies}))
    return catalog.model_copy(update={"levers": levers})


def read_confirmation(bundle_dir: Path, dimensions: list[str]) -> dict[str, dict[str, Any]]:
    """The confirmed levers' rows of ``bundle_dir/confirmation.json`` (empty without the file), checked:
    every value's effect present and finite, quality counts in range."""
    path = bundle_dir / CONFIRMATION_FILE
    if not path.exists():
        return {}
    where = str(path)
    doc = read_json_object(
        path, what="confirmation record", hint="re-run 'causalguard behaviour confirm' or delete the file"
    )
    levers = doc.get("levers")
    if not isinstance(levers, dict):
        raise ConfigError.single(where, "expected an object with 'levers'", field="levers")
    for lever_id, row in levers.items():
        field = f"levers.{lever_id}"
        effects = row.get("effects") if isinstance(row, dict) else None
        if not isinstance(effects, dict) or sorted(effects) != sorted(dimensions):
            raise ConfigError.single(
                where,
                f"effects must name every value ({', '.join(dimensions)})",
                field=f"{field}.effects",
                hint="re-run 'causalguard behaviour confirm'",
            )
        for value, interval in effects.items():
            numbers = [interval.get(k) for k in ("mean", "ci_low", "ci_high")] if isinstance(interval, dict) else []
            if len(numbers) != 3 or not all(isinstance(x, int | float) and math.isfinite(x) for x in numbers):
                raise ConfigError.single(
                    where, "mean, ci_low and ci_high must be finite numbers", field=f"{field}.effects.{value}"
                )
        quality = row.get("quality")
        if not isinstance(quality, dict) or any(k not in quality for k in _QUALITY_FIELDS):
            raise ConfigError.single(where, f"quality needs {', '.join(_QUALITY_FIELDS)}", field=f"{field}.quality")
        if not (0 <= quality["degraded"] <= quality["n"] and 0 <= quality["p_value"] <= 1):
            raise ConfigError.single(
                where, "degraded must be within 0..n and p_value within 0..1", field=f"{field}.quality"
            )
        if "second_judge" in row:
            _check_second_judge(where, f"{field}.second_judge", row["second_judge"])
        checks = row.get("check_judges", [])
        if not isinstance(checks, list):
            raise ConfigError.single(where, "expected a list of judged targets", field=f"{field}.check_judges")
        for k, check in enumerate(checks):
            _check_second_judge(where, f"{field}.check_judges.{k}", check)
    return levers


def _judge_name(judged: dict[str, Any]) -> str:
    kind = judged.get("kind", "contrast")  # rows written before probe judges could be other judges
    return f"{judged['model']} {kind}"


def _interval_text(t: dict[str, float]) -> str:
    return f"{t['mean']:+.4f} (95% CI {t['ci_low']:+.4f} .. {t['ci_high']:+.4f})"


def _check_second_judge(where: str, field: str, second: object) -> None:
    target = second.get("target") if isinstance(second, dict) else None
    numbers = [target.get(k) for k in ("mean", "ci_low", "ci_high")] if isinstance(target, dict) else []
    if not (isinstance(second, dict) and isinstance(second.get("model"), str) and second["model"]):
        raise ConfigError.single(where, "expected the second judge's model name and target effect", field=field)
    if second.get("kind", "contrast") not in ("contrast", "probe"):
        raise ConfigError.single(where, "kind must be contrast or probe", field=f"{field}.kind")
    if len(numbers) != 3 or not all(isinstance(x, int | float) and math.isfinite(x) for x in numbers):
        raise ConfigError.single(where, "mean, ci_low and ci_high must be finite numbers", field=f"{field}.target")


def merged_confirmation(bundle_dir: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """This run's confirmation ``doc`` with the lever rows of earlier runs it did not re-measure."""
    path = bundle_dir / CONFIRMATION_FILE
    earlier: dict[str, Any] = {}
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            earlier = old.get("levers", {}) if isinstance(old, dict) else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            earlier = {}
    kept = {k: v for k, v in earlier.items() if k not in doc["levers"]}
    return {**doc, "levers": {**kept, **doc["levers"]}}
