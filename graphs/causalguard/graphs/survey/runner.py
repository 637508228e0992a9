"""Run a value survey: checkpointed per condition, resumable, deterministic on CPU."""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from causalguard.errors import ConfigError
from causalguard.graphs.survey.agreement import run_agreement
from causalguard.graphs.survey.backends import LocalBackend, SurveyBackend, make_scorer
from causalguard.graphs.survey.conditions import Condition
from causalguard.graphs.survey.results import (
    ANSWERS_FILE,
    CONDITIONS_FILE,
    QUALITY_JSON,
    QUALITY_MD,
    RUN_FILE,
    ConditionInfo,
    SurveyResult,
    write_conditions,
)
from causalguard.graphs.survey.settings import SurveySettings
from causalguard.graphs.survey.store import AnswerStore
from causalguard.models.loaded import LoadedModel
from causalguard.run_records import read_run_record
from causalguard.scoring.base import ItemAnswer
from causalguard.values.inventory import Inventory

SURVEY_FORMAT = "causalguard.survey/1"


PROMPT_OVERHEAD_TOKENS = 128  # chat template, framing and the answer


def check_context(lm: LoadedModel, inventory: Inventory, conditions: Sequence[Condition]) -> None:
    """The longest role text plus the longest item must fit the model's context, or the survey would
    score truncated prompts without a word: refuse before the first forward pass."""
    limit = getattr(getattr(lm.model, "config", None), "max_position_embeddings", None)
    if not isinstance(limit, int) or not conditions:
        return
    role = max(conditions, key=lambda c: len(c.role.system_prompt or c.role.description)).role
    texts = [t for _, item in inventory.items() for t in (item.statement, item.question)]
    item = max(texts, key=len)
    count = (
        len(lm.tokenizer(role.system_prompt or role.description)["input_ids"])
        + len(lm.tokenizer(item)["input_ids"])
        + PROMPT_OVERHEAD_TOKENS
    )
    if count > limit:
        raise ConfigError.single(
            f"role '{role.id}'",
            f"the longest role text and item need about {count} tokens; the model's context is {limit}",
            field="system_prompt",
            hint="shorten the role's system prompt or description",
        )


def _condition_info(c: Condition) -> ConditionInfo:
    return ConditionInfo(
        id=c.id,
        role=c.role.id,
        role_kind=c.role.kind,
        steering=c.steering.id,
        target=c.role.target,
        direction=c.role.direction,
        expected=dict(c.role.expected),
    )


def _signature(
    lm: LoadedModel,
    inventory: Inventory,
    conditions: Sequence[Condition],
    settings: SurveySettings,
    method_version: int,
) -> str:
    described = [
        [c.id, c.role.system_prompt, c.role.description, c.steering.prompt_note(), repr(c.steering)] for c in conditions
    ]
    blob = json.dumps(
        [lm.fingerprint, inventory.content_hash(), described, asdict(settings), method_version], sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for package in ("causalguard", "torch", "transformers"):
        try:
            out[package] = version(package)
        except Exception:
            out[package] = "unknown"
    return out


def run_survey(
    lm: LoadedModel,
    inventory: Inventory,
    conditions: Sequence[Condition],
    settings: SurveySettings,
    out_dir: Path,
    *,
    progress: bool = True,
    restart: bool = False,
    on_condition_done: Callable[[str], None] | None = None,
    backend: SurveyBackend | None = None,
) -> SurveyResult:
    """Score every item under every condition and write the output folder (see docs/survey.md: output folder).

    An existing folder from the same model, inventory, conditions and settings is resumed: finished
    conditions are kept, the rest computed. A folder from different settings is refused unless
    ``restart`` is set, which deletes its answers. ``backend`` scores the conditions (default: in this
    process; ``RayBackend`` on a Ray cluster); the results do not depend on it.
    """
    import torch

    scoring: SurveyBackend = backend or LocalBackend()
    out_dir.mkdir(parents=True, exist_ok=True)
    method = make_scorer(settings)
    signature = _signature(lm, inventory, conditions, settings, method.version)
    run_file = out_dir / RUN_FILE
    store = AnswerStore(out_dir / ANSWERS_FILE)
    if run_file.exists():
        previous = {} if restart else read_run_record(run_file)
        if previous.get("signature") != signature:
            if not restart:
                raise ConfigError.single(
                    str(out_dir),
                    "holds a survey run with a different model, inventory, roles or settings",
                    hint="use another --out folder, or --restart to discard the old answers",
                )
            store.path.unlink(missing_ok=True)
    items = list(inventory.items())
    check_context(lm, inventory, conditions)
    infos = [_condition_info(c) for c in conditions]
    metadata: dict[str, Any] = {
        "format": SURVEY_FORMAT,
        "signature": signature,
        "status": "running",
        "model": {"name": lm.name, "fingerprint": lm.fingerprint, "source": lm.source},
        "inventory": {
            "name": inventory.name,
            "version": inventory.version,
            "hash": inventory.content_hash(),
            "dimensions": inventory.names,
            "items": len(items),
        },
        "method": {"name": settings.method, "version": method.version, "scale": method.scale},
        "settings": asdict(settings),
        "conditions": len(conditions),
        "versions": _versions(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    run_file.write_text(json.dumps(metadata, indent=2))
    write_conditions(out_dir / CONDITIONS_FILE, infos)

    torch.manual_seed(settings.seed)
    done = store.load(expected_items=len(items))
    todo = [c for c in conditions if c.id not in done]
    started = time.perf_counter()
    with tqdm(
        total=len(conditions) * len(items),
        initial=len(done) * len(items),
        unit="item",
        desc=f"survey ({settings.method}, {scoring.name})",
        disable=not progress,
        dynamic_ncols=True,
    ) as bar:

        def finished(condition: Condition, answers: list[ItemAnswer]) -> None:
            store.append(condition.id, answers)
            done[condition.id] = answers
            bar.update(len(items))
            if on_condition_done is not None:
                on_condition_done(condition.id)

        workers = scoring.run(lm, settings, todo, items, finished)
    elapsed = time.perf_counter() - started

    result = SurveyResult(
        out_dir=out_dir,
        dimensions=inventory.names,
        conditions=infos,
        answers={c.id: done[c.id] for c in conditions},
        metadata=metadata,
    )
    result.write_scores()
    agreement = run_agreement(lm, inventory, result, conditions, settings, progress=progress)

    from causalguard.graphs.survey.quality_report import build_quality_report, render_markdown

    report = build_quality_report(result, agreement)
    (out_dir / QUALITY_JSON).write_text(json.dumps(report, indent=2))
    (out_dir / QUALITY_MD).write_text(render_markdown(report))
    metadata.update(
        status="complete",
        finished=datetime.now(UTC).isoformat(timespec="seconds"),
        timing={
            "computed_conditions": len(todo),
            "seconds": round(elapsed, 2),
            "items_per_second": round(len(todo) * len(items) / elapsed, 2) if todo and elapsed > 0 else None,
            "backend": scoring.name,
            "workers": workers,
        },
    )
    run_file.write_text(json.dumps(metadata, indent=2))
    return result
