"""The behaviour artifacts of a bundle, as the runtime reads them (written by ``causalguard behaviour report``).

- ``behaviour.json`` (schema ``causalguard.behaviour/1``): judge validation, reply-quality calibration,
  per-lever behavioural effects and quality, agreement with the survey.
- ``BEHAVIOUR.md``: the same, rendered for people.
- ``judge.json`` + ``judge.safetensors``: the fitted value judge (``causalguard.judging.judge``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from causalguard.artifacts import BEHAVIOUR_FILE, BEHAVIOUR_SCHEMA
from causalguard.errors import ConfigError
from causalguard.judging.reply_quality import QualityCalibration


@dataclass(frozen=True)
class LeverBehaviour:
    """One lever as the replies showed it."""

    id: str
    effects: dict[str, tuple[float, float, float]]  # value -> (mean, ci_low, ci_high), judge units
    moves_target_as_intended: bool | None
    degrades_replies: bool
    degraded_rate: float


@dataclass(frozen=True)
class BehaviourSummary:
    path: Path
    calibration: QualityCalibration
    weak_values: tuple[str, ...]
    levers: dict[str, LeverBehaviour]


def _number(value: Any, where: str, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
        raise ConfigError.single(
            str(path), f"{value!r} is not a finite number", field=where, hint="rerun 'causalguard behaviour report'"
        )
    return float(value)


def load_behaviour(folder: Path) -> BehaviourSummary | None:
    """The bundle's behaviour summary, or None when it has no ``behaviour.json``."""
    path = folder / BEHAVIOUR_FILE
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError.single(
            str(path), f"not valid JSON: {exc}", hint="rerun 'causalguard behaviour report'"
        ) from None
    if not isinstance(doc, dict) or doc.get("schema") != BEHAVIOUR_SCHEMA:
        raise ConfigError.single(str(path), f"schema is not {BEHAVIOUR_SCHEMA}", field="schema")
    try:
        cal = doc["quality_calibration"]
        added: dict[str, Any] = {}  # fields of later calibrations; older files keep the defaults (flag none)
        if "max_recited" in cal:
            added["max_recited"] = int(_number(cal["max_recited"], "quality_calibration.max_recited", path))
        if "max_sameness" in cal:
            added["max_sameness"] = _number(cal["max_sameness"], "quality_calibration.max_sameness", path)
        calibration = QualityCalibration(
            n=int(cal["n"]),
            max_repetition=_number(cal["max_repetition"], "quality_calibration.max_repetition", path),
            min_distinct2=_number(cal["min_distinct2"], "quality_calibration.min_distinct2", path),
            max_perplexity=_number(cal["max_perplexity"], "quality_calibration.max_perplexity", path),
            min_relevance=_number(cal["min_relevance"], "quality_calibration.min_relevance", path),
            refusal_rate=_number(cal["refusal_rate"], "quality_calibration.refusal_rate", path),
            degraded_rate=_number(cal["degraded_rate"], "quality_calibration.degraded_rate", path),
            **added,
        )
        levers = {}
        for k, row in enumerate(doc["levers"]):
            effects = {
                v: tuple(_number(e[f], f"levers[{k}].effects.{v}.{f}", path) for f in ("mean", "ci_low", "ci_high"))
                for v, e in row["effects"].items()
            }
            levers[row["id"]] = LeverBehaviour(
                str(row["id"]),
                effects,  # type: ignore[arg-type]
                row["moves_target_as_intended"],
                bool(row["quality"]["is_degraded"]),
                _number(row["quality"]["rate"], f"levers[{k}].quality.rate", path),
            )
        weak = tuple(str(v) for v in doc["judge"]["weak_values"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError.single(
            str(path), f"missing or malformed field: {exc}", hint="rerun 'causalguard behaviour report'"
        ) from None
    return BehaviourSummary(path, calibration, weak, levers)
