"""How far a lever's reply effect was tested, and which levers that sets aside.

A lever earns its place in a plan by a screen (its effect on the replies of the prompts that selected
it), a confirmation (measured again on replies nothing selected it on) and a held-out test (a
pre-registered test on prompts written for it). A screening effect is the lucky draw that selected
the lever and runs high, so the planner lets only the best evidenced levers for a target and direction
compete.
"""

from __future__ import annotations

from collections.abc import Sequence

from causalguard.bundle.catalog import LeverEntry

EVIDENCE = ("screened only", "confirmed on fresh dev replies", "passed a held-out test")


def evidence_rank(lever: LeverEntry) -> int:
    """How far a lever's reply effect was tested: 2 passed a held-out test, 1 confirmed on replies nothing
    selected it on, 0 screened only (or not measured on replies). ``EVIDENCE[rank]`` says it in words."""
    replies = lever.replies
    if replies is None:
        return 0
    if replies.held_out is not None and replies.held_out.passed:
        return 2
    return 1 if replies.confirmed else 0


def best_evidenced(levers: Sequence[LeverEntry]) -> tuple[list[LeverEntry], dict[str, str]]:
    """``levers`` less those outranked: per target and direction, only the levers with the highest
    ``evidence_rank`` stay. Returns the kept levers and, for each one set aside, why."""
    top: dict[tuple[str | None, int], int] = {}
    for lever in levers:
        key = (lever.target, lever.direction)
        top[key] = max(top.get(key, 0), evidence_rank(lever))
    kept, aside = [], {}
    for lever in levers:
        best = top[(lever.target, lever.direction)]
        if evidence_rank(lever) < best:
            aside[lever.id] = f"{EVIDENCE[evidence_rank(lever)]}, where another lever {EVIDENCE[best]}"
        else:
            kept.append(lever)
    return kept, aside
