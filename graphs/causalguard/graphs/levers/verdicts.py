"""Catalog v2: attach what the replies showed to every lever, and decide which levers may be planned.

Per lever with a behaviour-report row (``behaviour.json``):

- ``degrades_replies``: its replies fall outside the unsteered quality range more often than
  unsteered ones (one-sided Fisher exact, p < 0.05): never planned;
- ``weaker_setting``: an SAE feature also has a stronger setting of the same sign whose replies stay
  within the quality range; the catalog keeps the strongest fluent setting per feature and sign;
- ``no_target_effect``: its judge effect on its own target does not exclude zero the intended way;
  it may still be planned for what it does to other values, but it is never "best" for its target;
- ``usable``: moves its target the intended way beyond noise, replies stay fluent.

Levers without a row keep ``replies = None`` and are never planned from a catalog v2 (unknown is not safe).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from causalguard.artifacts import CATALOG_SCHEMA_REPLIES
from causalguard.bundle.catalog import Catalog, Interval, LeverEntry, LeverReplies, Verdict


def _verdict(entry: LeverEntry, row: dict[str, Any]) -> tuple[Verdict, str]:
    quality = row["quality"]
    if quality["is_degraded"]:
        return "degrades_replies", (
            f"{quality['degraded']}/{quality['n']} replies outside the unsteered quality "
            f"range (unsteered {quality['baseline_degraded']}/{quality['baseline_n']}, "
            f"p {quality['p_value']:.3f})"
        )
    if entry.target is None:
        return "no_target_effect", "no target value (proposed by the ' your values' rule)"
    e = row["effects"][entry.target]
    if not row["moves_target_as_intended"]:
        return "no_target_effect", (
            f"{entry.target} {e['mean']:+.2f} in replies (95% CI {e['ci_low']:+.2f} .. "
            f"{e['ci_high']:+.2f}) does not exclude 0 the intended way"
        )
    return "usable", f"{entry.target} {e['mean']:+.2f} in replies (95% CI {e['ci_low']:+.2f} .. {e['ci_high']:+.2f})"


def attach_replies(catalog: Catalog, rows: Sequence[dict[str, Any]], baseline: dict[str, float]) -> Catalog:
    """``catalog`` as schema v2: every lever with its reply measurements and verdict (see module doc)."""
    by_id = {r["id"]: r for r in rows}
    missing = [d for d in catalog.dimensions if d not in baseline]
    if missing:
        raise ValueError(f"the reply baseline lacks values {', '.join(missing)}")
    entries: list[LeverEntry] = []
    for entry in catalog.levers:
        row = by_id.get(entry.id)
        if row is None:
            entries.append(entry.model_copy(update={"replies": None}))
            continue
        verdict, why = _verdict(entry, row)
        q = row["quality"]
        replies = LeverReplies(
            effects={d: Interval(**row["effects"][d]) for d in catalog.dimensions},
            moves_target_as_intended=row["moves_target_as_intended"],
            degraded=q["degraded"],
            n=q["n"],
            degraded_rate=q["rate"],
            p_value=q["p_value"],
            degrades_replies=q["is_degraded"],
            verdict=verdict,
            why=why,
        )
        entries.append(entry.model_copy(update={"replies": replies}))
    entries = _keep_strongest_fluent(entries)
    return catalog.model_copy(
        update={
            "schema_": CATALOG_SCHEMA_REPLIES,
            "levers": entries,
            "replies_baseline": {d: float(baseline[d]) for d in catalog.dimensions},
        }
    )


def _keep_strongest_fluent(entries: list[LeverEntry]) -> list[LeverEntry]:
    """Per SAE feature and sign, mark fluent settings weaker than the strongest fluent one."""
    strongest: dict[tuple[int, int], LeverEntry] = {}
    for e in entries:
        if e.kind != "sae" or e.feature is None or e.replies is None or e.replies.degrades_replies:
            continue
        key = (e.feature, 1 if e.strength > 0 else -1)
        if key not in strongest or abs(e.strength) > abs(strongest[key].strength):
            strongest[key] = e
    out = []
    for e in entries:
        if e.kind == "sae" and e.feature is not None and e.replies is not None and not e.replies.degrades_replies:
            kept = strongest[(e.feature, 1 if e.strength > 0 else -1)]
            if kept.id != e.id:
                why = f"{kept.id} is stronger and its replies stay within the quality range"
                e = e.model_copy(
                    update={"replies": e.replies.model_copy(update={"verdict": "weaker_setting", "why": why})}
                )
        out.append(e)
    return out
