"""Agreement between logit scoring and generate-then-parse on a seeded sample of answers.

First-token probabilities and generated answers often disagree on instruct models ("My Answer is C",
Wang et al. 2024); the quality report states how often they do here.
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from causalguard.graphs.survey.conditions import Condition
from causalguard.graphs.survey.results import AGREEMENT_FILE, SurveyResult
from causalguard.graphs.survey.settings import SurveySettings
from causalguard.models.loaded import LoadedModel
from causalguard.scoring.generate import GenerateParse
from causalguard.values.inventory import Inventory

LOGIT_YES_NO_METHODS = ("yesno",)


def sample_pairs(result: SurveyResult, n: int, seed: int) -> list[tuple[str, str]]:
    pairs = [(c.id, a.item_id) for c in result.conditions for a in result.answers[c.id]]
    return sorted(random.Random(seed).sample(pairs, min(n, len(pairs))))


def run_agreement(
    lm: LoadedModel,
    inventory: Inventory,
    result: SurveyResult,
    conditions: Sequence[Condition],
    settings: SurveySettings,
    *,
    progress: bool,
) -> dict[str, Any] | None:
    """Generate answers for the sample and compare; None when no sample was asked for."""
    if settings.agreement_sample <= 0:
        return None
    if settings.method not in LOGIT_YES_NO_METHODS:
        return {"applicable": False, "reason": f"'{settings.method}' does not produce yes/no answers to compare"}
    path = result.out_dir / AGREEMENT_FILE
    pairs = sample_pairs(result, settings.agreement_sample, settings.seed)
    rows = _read(path) if path.exists() else {}
    if set(rows) != set(pairs):
        rows = _generate(lm, inventory, conditions, pairs, settings, progress)
        _write(path, rows)
    logit = {(c, a.item_id): a for c, answers in result.answers.items() for a in answers}
    parsed = [(k, v) for k, v in rows.items() if v[0] != 0]
    # raw: the model's own preference, P(yes) > P(no); calibrated: after removing the condition's bias.
    agree_raw = sum(1 for k, (gen, _) in parsed if (logit[k].raw > 0) == (gen > 0))
    agree_cal = sum(1 for k, (gen, _) in parsed if (logit[k].score * logit[k].polarity > 0) == (gen > 0))
    generated_yes = sum(1 for _, (gen, _) in parsed if gen > 0)
    return {
        "applicable": True,
        "sample": len(rows),
        "parsed": len(parsed),
        "unparsed_rate": round(1 - len(parsed) / len(rows), 4) if rows else None,
        "agreement": round(agree_raw / len(parsed), 4) if parsed else None,
        "agreement_calibrated": round(agree_cal / len(parsed), 4) if parsed else None,
        "generated_yes_rate": round(generated_yes / len(parsed), 4) if parsed else None,
    }


def _generate(
    lm: LoadedModel,
    inventory: Inventory,
    conditions: Sequence[Condition],
    pairs: list[tuple[str, str]],
    settings: SurveySettings,
    progress: bool,
) -> dict[tuple[str, str], tuple[int, str]]:
    from tqdm.auto import tqdm

    by_condition: dict[str, list[str]] = defaultdict(list)
    for condition_id, item_id in pairs:
        by_condition[condition_id].append(item_id)
    lookup = {c.id: c for c in conditions}
    inventory_items = {item.id: (dim, item) for dim, item in inventory.items()}
    method = GenerateParse(batch_size=min(settings.batch_size, 16), max_new_tokens=settings.max_new_tokens)
    rows: dict[tuple[str, str], tuple[int, str]] = {}
    for condition_id, item_ids in tqdm(sorted(by_condition.items()), desc="agreement (generate)", disable=not progress):
        condition = lookup[condition_id]
        answers = method.score(lm, condition.role, condition.steering, [inventory_items[i] for i in item_ids])
        for item_id, answer in zip(item_ids, answers, strict=True):
            rows[(condition_id, item_id)] = (int(answer.raw), answer.text or "")
    return rows


def _read(path: Any) -> dict[tuple[str, str], tuple[int, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {(r["condition"], r["item_id"]): (int(r["generated"]), r["text"]) for r in csv.DictReader(handle)}


def _write(path: Any, rows: dict[tuple[str, str], tuple[int, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["condition", "item_id", "generated", "text"])
        for (condition, item), (generated, text) in sorted(rows.items()):
            writer.writerow([condition, item, generated, text])
