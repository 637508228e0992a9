"""``held_out.json``: levers tested on held-out prompts, pooled over looks, and how that rewrites a catalog.

A lever is screened and confirmed on dev prompts; ``behaviour validate`` then runs the config's plans on
test prompts and fresh personas. Each validation file is one *look*. For every lever that a profile
planned alone (one lever, one target), the looks' target effects are pooled (inverse-variance weighted,
each look's standard error read back from its 95% t-interval) into one interval whose coverage is
Pocock-adjusted for the number of looks (2 looks: 97.06%), so that looking again at new test data does
not inflate the error rate. The lever *holds* when that interval excludes 0 the intended way, no look
degraded its replies, and every look that ran a second judge (another model, which selected nothing)
saw the target move the intended way beyond noise too. The record also counts, over the looks, the
values that moved beyond noise and for how many of them the plan's forecast had the right sign.

A test split read by at most five looks is one *series* with its own design, fixed in advance. When a
split is used up, a fresh split starts a new series (``held_out_series_record``): each lever is pooled
within the series that looked at it; a lever looked at in several series must hold in every one.

Held-out results only ever take a lever away: a lever that did not hold becomes ``failed_held_out`` and
is never planned; one that held keeps its verdict. They never make a lever usable, so test data cannot
select what the product promises.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scipy import stats

from causalguard.bundle.catalog import Catalog, HeldOut
from causalguard.errors import ConfigError
from causalguard.run_records import read_json_object

HELD_OUT_FILE = "held_out.json"
HELD_OUT_SCHEMA = "causalguard.held_out/1"
_HELD_MARK = "; held-out test: "

# Pocock's constant critical values, two-sided overall alpha 0.05, K equally weighted looks
# (Pocock 1977; Jennison & Turnbull, Group Sequential Methods, Table 2.1).
_POCOCK_Z = {1: 1.960, 2: 2.178, 3: 2.289, 4: 2.361, 5: 2.413}


def pocock_z(looks: int) -> float:
    """The critical value at every look of a ``looks``-look Pocock design (overall alpha 0.05)."""
    if looks not in _POCOCK_Z:
        raise ValueError(f"the held-out test supports 1 to {max(_POCOCK_Z)} looks, got {looks}")
    return _POCOCK_Z[looks]


def _standard_error(interval: dict[str, float]) -> float:
    t = float(stats.t.ppf(0.975, interval["n"] - 1))
    return (interval["ci_high"] - interval["ci_low"]) / (2 * t)


def _finite_interval(where: str, field: str, value: Any) -> dict[str, float]:
    raw = [value.get(k) for k in ("mean", "ci_low", "ci_high", "n")] if isinstance(value, dict) else []
    numbers = [float(x) for x in raw if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)]
    if len(numbers) != 4:
        raise ConfigError.single(
            where,
            "expected mean, ci_low, ci_high and n as finite numbers",
            field=field,
            hint="re-run 'causalguard behaviour validate'",
        )
    mean, low, high, n = numbers
    if not (low <= mean <= high and n >= 2):
        raise ConfigError.single(where, "expected ci_low <= mean <= ci_high and n >= 2", field=field)
    return {"mean": mean, "ci_low": low, "ci_high": high, "n": int(n)}


def single_lever_results(path: Path) -> dict[str, dict[str, Any]]:
    """One validation file's levers planned alone: lever id -> target, its measured interval, quality.

    Profiles that planned the same lever measured the same replies; the first one is kept."""
    where = str(path)
    doc = read_json_object(
        path, what="validation file", hint="pass validation files written by 'causalguard behaviour validate'"
    )
    profiles = doc.get("profiles")
    if not isinstance(profiles, dict):
        raise ConfigError.single(
            where,
            "expected a validation file with 'profiles'",
            field="profiles",
            hint="pass validation files written by 'causalguard behaviour validate'",
        )
    out: dict[str, dict[str, Any]] = {}
    for name, result in profiles.items():
        levers = result.get("levers") if isinstance(result, dict) else None
        targets = result.get("target_moved_as_intended") if isinstance(result, dict) else None
        if not isinstance(levers, list) or not isinstance(targets, dict) or len(levers) != 1 or len(targets) != 1:
            continue
        lever_id, target = str(levers[0]), next(iter(targets))
        if lever_id in out:
            continue
        field = f"profiles.{name}"
        interval = _finite_interval(where, f"{field}.measured.{target}", (result.get("measured") or {}).get(target))
        quality = result.get("quality")
        if not isinstance(quality, dict) or not isinstance(quality.get("is_degraded"), bool):
            raise ConfigError.single(where, "expected quality.is_degraded (true or false)", field=f"{field}.quality")
        confirms = result.get("second_judge_confirms")  # None: the look ran no second judge
        second = None if not isinstance(confirms, dict) else bool(confirms.get(target))
        out[lever_id] = {
            "target": target,
            "interval": interval,
            "degraded": quality["is_degraded"],
            "profile": name,
            "second_judge": second,
            **_sign_agreement(result),
        }
    return out


def _sign_agreement(result: dict[str, Any]) -> dict[str, int]:
    """How many values moved beyond noise in a look, and for how many the plan's forecast had the same sign."""
    moved = result.get("moved_beyond_noise") or []
    forecast, measured = result.get("forecast") or {}, result.get("measured") or {}
    agreed = sum(
        1
        for v in moved
        if isinstance(forecast.get(v), dict)
        and isinstance(measured.get(v), dict)
        and (forecast[v].get("change", 0) > 0) == (measured[v].get("mean", 0) > 0)
    )
    return {"moved": len(moved), "agreed": agreed}


def held_out_record(catalog: Catalog, looks: Sequence[Path]) -> dict[str, Any]:
    """Pool the levers planned alone in ``looks`` (validation files, in the order they were run)."""
    if not looks:
        raise ValueError("the held-out test needs at least one validation file")
    z = pocock_z(len(looks))
    level = 1 - 2 * float(stats.norm.sf(z))
    per_look = [(path.name, single_lever_results(path)) for path in looks]
    known = {lever.id for lever in catalog.levers}
    for path, (_, found) in zip(looks, per_look, strict=True):
        for lever_id in sorted(set(found) - known):
            raise ConfigError.single(
                str(path),
                f"lever {lever_id} is not in the bundle's catalog",
                field=f"profiles.{found[lever_id]['profile']}.levers",
                hint="pass validations run with the bundle whose catalog you update",
            )
    levers: dict[str, Any] = {}
    for lever_id in sorted({lid for _, found in per_look for lid in found}):
        lever = catalog.lever(lever_id)
        rows = [(name, found[lever_id]) for name, found in per_look if lever_id in found]
        weights = [1 / _standard_error(row["interval"]) ** 2 for _, row in rows]
        mean = sum(w * row["interval"]["mean"] for w, (_, row) in zip(weights, rows, strict=True)) / sum(weights)
        half = z / math.sqrt(sum(weights))
        low, high = mean - half, mean + half
        degraded = [name for name, row in rows if row["degraded"]]
        unconfirmed = [name for name, row in rows if row.get("second_judge") is False]
        moved = low > 0 if lever.direction > 0 else high < 0
        passed = moved and not degraded and not unconfirmed
        target = rows[0][1]["target"]
        figures = (
            f"{target} {mean:+.3f} ({level:.2%} CI {low:+.3f} .. {high:+.3f}, "
            f"{sum(row['interval']['n'] for _, row in rows)} pairs, {len(rows)} of {len(looks)} looks)"
        )
        moved, agreed = sum(row["moved"] for _, row in rows), sum(row["agreed"] for _, row in rows)
        signs = f"; forecast sign right for {agreed} of {moved} values that moved" if moved else ""
        why = (
            f"held: {figures}{signs}"
            if passed
            else f"did not hold: {figures}"
            + (f"; replies degraded in {', '.join(degraded)}" if degraded else "")
            + (f"; the second judge did not see it in {', '.join(unconfirmed)}" if unconfirmed else "")
        )
        levers[lever_id] = {
            "target": target,
            "direction": lever.direction,
            "looks": [
                {
                    "file": name,
                    "profile": row["profile"],
                    **row["interval"],
                    "degraded": row["degraded"],
                    "moved": row["moved"],
                    "agreed": row["agreed"],
                }
                for name, row in rows
            ],
            "side_effect_signs": {"moved": moved, "agreed": agreed},
            "pooled": {"mean": mean, "ci_low": low, "ci_high": high, "n": sum(row["interval"]["n"] for _, row in rows)},
            "passed": passed,
            "why": why,
        }
    for row in levers.values():
        row["level"] = level
    return {
        "schema": HELD_OUT_SCHEMA,
        "looks": [p.name for p in looks],
        "design": "pocock",
        "critical_z": z,
        "level": level,
        "levers": levers,
    }


def held_out_series_record(catalog: Catalog, series: Sequence[Sequence[Path]]) -> dict[str, Any]:
    """Pool each series of looks (one test split each, in the order the splits were written) with its own
    Pocock design, and join them: a lever looked at in several series keeps the row of the first series it
    failed in (or of its last series when it held in all), so a new split never rescues a failed lever."""
    if not series or any(not looks for looks in series):
        raise ValueError("the held-out test needs at least one validation file per series")
    records = [held_out_record(catalog, looks) for looks in series]
    levers: dict[str, Any] = {}
    for index, record in enumerate(records):
        for lever_id, row in record["levers"].items():
            earlier = levers.get(lever_id)
            if earlier is not None and not earlier["passed"]:
                continue
            levers[lever_id] = {**row, "series": index}
    first = records[0]
    return {
        "schema": HELD_OUT_SCHEMA,
        "looks": [name for record in records for name in record["looks"]],
        "design": "pocock per series",
        "critical_z": first["critical_z"],
        "level": first["level"],
        "series": [
            {"looks": record["looks"], "critical_z": record["critical_z"], "level": record["level"]}
            for record in records
        ],
        "levers": levers,
    }


def held_out_catalog(catalog: Catalog, record: dict[str, Any]) -> Catalog:
    """The catalog with every tested lever's ``replies.held_out`` set; a plannable lever that did not hold
    becomes ``failed_held_out``. Applying the same record twice gives the same catalog."""
    tested = record.get("levers", {})
    out = []
    for lever in catalog.levers:
        row = tested.get(lever.id)
        if row is None or lever.replies is None:
            out.append(lever)
            continue
        pooled = row["pooled"]
        held = HeldOut(
            mean=pooled["mean"],
            ci_low=pooled["ci_low"],
            ci_high=pooled["ci_high"],
            n=pooled["n"],
            level=row.get("level", record["level"]),
            looks=[look["file"] for look in row["looks"]],
            passed=row["passed"],
        )
        why = lever.replies.why.split(_HELD_MARK)[0] + _HELD_MARK + row["why"]
        verdict = lever.replies.verdict
        if not row["passed"] and lever.replies.plannable:
            verdict = "failed_held_out"
        out.append(
            lever.model_copy(
                update={"replies": lever.replies.model_copy(update={"held_out": held, "verdict": verdict, "why": why})}
            )
        )
    return catalog.model_copy(update={"levers": out})


def read_held_out(bundle_dir: Path) -> dict[str, Any]:
    """``bundle_dir/held_out.json`` (an empty record without the file), checked: every pooled interval finite
    and ordered, ``passed`` a boolean, the level within (0, 1)."""
    path = bundle_dir / HELD_OUT_FILE
    if not path.exists():
        return {"levers": {}}
    where = str(path)
    doc = read_json_object(
        path, what="held-out record", hint="re-run 'causalguard behaviour held-out' or delete the file"
    )
    if doc.get("schema") != HELD_OUT_SCHEMA or not isinstance(doc.get("levers"), dict):
        raise ConfigError.single(
            where,
            f"expected schema {HELD_OUT_SCHEMA} with 'levers'",
            field="schema",
            hint="re-run 'causalguard behaviour held-out'",
        )
    level = doc.get("level")
    if not isinstance(level, float) or not 0 < level < 1:
        raise ConfigError.single(where, "level must be a number within (0, 1)", field="level")
    for lever_id, row in doc["levers"].items():
        field = f"levers.{lever_id}"
        if not isinstance(row, dict) or not isinstance(row.get("passed"), bool) or not isinstance(row.get("why"), str):
            raise ConfigError.single(where, "expected passed (true or false) and why", field=field)
        _finite_interval(where, f"{field}.pooled", row.get("pooled"))
        looks = row.get("looks")
        if not isinstance(looks, list) or not looks or not all(isinstance(x, dict) and "file" in x for x in looks):
            raise ConfigError.single(
                where, "expected a non-empty list of looks with their file", field=f"{field}.looks"
            )
    return doc
