"""``causalguard levers measure``: every lever's effect on every value, over held-out personas.

Each lever is a steering condition crossed with the same held-out personas (seeded apart from the
bundle's personas). Its effect on value v for persona p is score(p, lever)_v - score(p, none)_v,
summarised as mean, 95% t-interval and n. The survey machinery checkpoints every condition, so an
interrupted measurement resumes. Fluency cost per lever: perplexity ratio of fixed neutral texts
(SAE levers; role prompts do not alter how the text itself is computed) and the share of unparseable
answers to short generated yes/no questions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from causalguard.adapters.hf.interventions import FeatureEdit
from causalguard.adapters.hf.sae import LoadedSae
from causalguard.adapters.hf.sae_condition import SaeSteering
from causalguard.bundle.lever import LeverSpec
from causalguard.graphs.survey.backends import SurveyBackend
from causalguard.graphs.survey.conditions import build_conditions
from causalguard.graphs.survey.results import SurveyResult
from causalguard.graphs.survey.runner import SurveySettings, run_survey
from causalguard.models.loaded import LoadedModel
from causalguard.roles.personas import generate_personas
from causalguard.roles.role import BASELINE, Role
from causalguard.scoring.generate import GenerateParse
from causalguard.steering_conditions import NoSteering, PromptSteering, SteeringCondition
from causalguard.values.inventory import Inventory

NEUTRAL_TEXTS: tuple[str, ...] = (
    "The train leaves the station at nine in the morning and arrives in the city before noon.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "To make a cup of tea, heat the water, add the tea bag and wait three minutes.",
    "The library is open from Monday to Friday, and closed on public holidays.",
    "A triangle has three sides, and the angles inside it add up to one hundred and eighty degrees.",
    "The weather today is cloudy with a light wind from the west.",
    "Paris is the capital of France, and Berlin is the capital of Germany.",
    "Please remember to bring a pen and your notebook to the meeting on Thursday.",
)


@dataclass(frozen=True)
class MeasureSettings:
    personas: int = 5
    persona_seed: int = 1000  # apart from the bundle's personas (seed 0)
    fluency_questions: int = 4
    fluency_tokens: int = 40
    batch_size: int = 32


def lever_survey_condition(lever: LeverSpec, sae: LoadedSae | None, residual_norm: float) -> SteeringCondition:
    if lever.kind == "role":
        assert lever.text is not None
        return PromptSteering(id=lever.id, text=lever.text)
    if sae is None or lever.feature is None:
        raise ValueError(f"lever {lever.id} needs an SAE")
    edit = FeatureEdit(lever.feature, "add", sae.additive_value(lever.feature, lever.strength, residual_norm))
    return SaeSteering(sae, (edit,), label=lever.id)


def _interval(diffs: np.ndarray) -> dict[str, float]:
    n = len(diffs)
    mean = float(diffs.mean())
    if n < 2:
        return {"mean": mean, "ci_low": mean, "ci_high": mean, "n": n}
    from scipy import stats

    half = float(stats.t.ppf(0.975, n - 1) * diffs.std(ddof=1) / math.sqrt(n))
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def survey_levers(
    lm: LoadedModel,
    inventory: Inventory,
    personas: Sequence[Role],
    steerings: Sequence[SteeringCondition],
    out_dir: Path,
    *,
    batch_size: int = 32,
    progress: bool = True,
    backend: SurveyBackend | None = None,
) -> SurveyResult:
    """Every persona unsteered and under every lever (statement scores): an interventional matrix whose
    ``steering`` column names the lever, resumable in ``out_dir``."""
    conditions = build_conditions(personas, steerings)
    return run_survey(
        lm,
        inventory,
        conditions,
        SurveySettings(method="statement", batch_size=batch_size),
        out_dir,
        progress=progress,
        backend=backend,
    )


def measure_effects(
    lm: LoadedModel,
    inventory: Inventory,
    levers: Sequence[LeverSpec],
    sae: LoadedSae | None,
    residual_norm: float,
    out_dir: Path,
    settings: MeasureSettings,
    *,
    progress: bool = True,
    backend: SurveyBackend | None = None,
) -> dict[str, Any]:
    personas = generate_personas(settings.personas, seed=settings.persona_seed)
    steerings = [NoSteering(), *[lever_survey_condition(lever, sae, residual_norm) for lever in levers]]
    result = survey_levers(
        lm,
        inventory,
        personas,
        steerings,
        out_dir / "survey",
        batch_size=settings.batch_size,
        progress=progress,
        backend=backend,
    )
    matrix = result.matrix()
    row = {c.id: i for i, c in enumerate(result.conditions)}
    dims = inventory.names
    unsteered = np.stack([matrix[row[p.id]] for p in personas])  # (personas, dims)
    noise = unsteered.std(axis=0, ddof=1) * 0.5 if len(personas) > 1 else np.zeros(len(dims))
    effects: dict[str, Any] = {}
    for lever, steering in zip(levers, steerings[1:], strict=True):
        steered = np.stack([matrix[row[f"{p.id}|{steering.id}"]] for p in personas])
        diffs = steered - unsteered
        per_value = {d: _interval(diffs[:, j]) for j, d in enumerate(dims)}
        counts = {
            d: {
                "increased": int((diffs[:, j] > noise[j]).sum()),
                "decreased": int((diffs[:, j] < -noise[j]).sum()),
                "unchanged": int((np.abs(diffs[:, j]) <= noise[j]).sum()),
            }
            for j, d in enumerate(dims)
        }
        effects[lever.id] = {"per_value": per_value, "counts": counts}
    baseline = {d: _interval(unsteered[:, j]) for j, d in enumerate(dims)}
    return {
        "personas": [p.id for p in personas],
        "baseline": baseline,
        "noise_threshold": dict(zip(dims, noise.tolist(), strict=True)),
        "effects": effects,
    }


def perplexity(lm: LoadedModel, steering: SteeringCondition, texts: Sequence[str] = NEUTRAL_TEXTS) -> float:
    total, count = 0.0, 0
    with torch.inference_mode(), steering.applied(lm.model):
        for text in texts:
            ids = torch.tensor([lm.tokenizer(text).input_ids])
            logits = lm.model(input_ids=ids).logits[0, :-1].float()
            loss = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum")
            total += float(loss)
            count += ids.shape[1] - 1
    return math.exp(total / count)


def fluency_costs(
    lm: LoadedModel,
    inventory: Inventory,
    levers: Sequence[LeverSpec],
    sae: LoadedSae | None,
    residual_norm: float,
    settings: MeasureSettings,
) -> dict[str, dict[str, float | None]]:
    items = list(inventory.items())[:: max(1, len(list(inventory.items())) // settings.fluency_questions)]
    items = items[: settings.fluency_questions]
    method = GenerateParse(batch_size=len(items), max_new_tokens=settings.fluency_tokens)
    base_ppl = perplexity(lm, NoSteering())

    def unparsed(steering: SteeringCondition) -> float:
        answers = method.score(lm, BASELINE, steering, items)
        return sum(1 for a in answers if a.raw == 0) / len(answers)

    out: dict[str, dict[str, float | None]] = {
        "none": {"perplexity": base_ppl, "perplexity_ratio": 1.0, "unparseable_rate": unparsed(NoSteering())}
    }
    for lever in levers:
        steering = lever_survey_condition(lever, sae, residual_norm)
        ppl = perplexity(lm, steering) if lever.kind == "sae" else None
        out[lever.id] = {
            "perplexity": ppl,
            "perplexity_ratio": None if ppl is None else ppl / base_ppl,
            "unparseable_rate": unparsed(steering),
        }
    return out
