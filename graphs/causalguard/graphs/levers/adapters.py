"""Train value adapters: one LoRA adapter per value and direction, from the model's own judged replies.

Context distillation with a preference loss, on dev prompts only. Per value:

1. **Candidates**: replies to dev prompts under the value's inclined and disinclined reply-style wording
   (``REPLY_STYLE_WORDINGS``), the greedy reply and ``samples`` sampled ones each, generated the way the
   guard serves them and checkpointed (``ReplyStore``).
2. **Pairs**: each candidate gets the judge's *specific* score on the value (its score on the value minus
   its mean score on the other values, so a reply that only talks more about values in general gains
   nothing). Candidates whose text is degraded by the bundle's reply-quality calibration (repetition,
   stutter, refusal, too short) or that recite their wording are dropped. For the direction ``up``, the
   chosen reply is the inclined candidate with the highest specific score and the rejected one the
   disinclined candidate with the lowest (``down``: the reverse); the pair is kept when they differ by
   at least ``margin``.
3. **Training**: a LoRA adapter (``peft``) on a copy of the model learns the chosen reply to the *plain*
   conversation (persona and user message, no wording). ``loss="sft"``: the chosen reply's negative
   log-likelihood per token; ``loss="dpo"``: the DPO loss (Rafailov et al. 2023) for the chosen over the
   rejected reply against the unadapted model, plus ``sft_weight`` times that negative log-likelihood.
   Serving then needs no instruction in the prompt, so nothing can be recited.
4. Saved as a PEFT folder ``adapters/<value>-<up|down>/`` (weights in float16) with ``adapter.json``.

Nothing here reads test prompts; the adapters are levers like any other, screened, confirmed and tested on
held-out prompts by ``behaviour report --adapters``, ``behaviour confirm`` and ``behaviour validate``.
"""

from __future__ import annotations

import copy
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from causalguard.adapters.hf.value_adapters import ADAPTER_CARD, ADAPTER_SCHEMA
from causalguard.bundle.integrity import seal_bundle
from causalguard.graphs.behaviour.replies import Persona, ReplyCondition, ReplySettings, ReplyStore, run_replies
from causalguard.graphs.behaviour.reply_backends import ReplyBackend
from causalguard.graphs.behaviour.report import served_system_prompt
from causalguard.graphs.levers.variants import REPLY_STYLE_WORDINGS
from causalguard.judging.judge import ValueJudge
from causalguard.judging.prompt_sets import Prompt
from causalguard.judging.reply_quality import QualityCalibration, text_quality
from causalguard.models.loaded import LoadedModel
from causalguard.runtime.generation import chat_prompt_ids

DIRECTIONS = {"up": 1, "down": -1}
TARGET_MODULES = ("q_proj", "v_proj", "o_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class AdapterSettings:
    """How candidates are drawn and adapters trained (recorded in every adapter's card)."""

    samples: int = 3
    temperature: float = 0.7
    max_new_tokens: int = 64
    margin: float = 0.2
    rank: int = 8
    alpha: int = 16
    target_modules: tuple[str, ...] = TARGET_MODULES
    epochs: int = 3
    learning_rate: float = 5e-4
    batch_size: int = 4
    loss: str = "sft"
    beta: float = 0.1
    sft_weight: float = 0.2
    seed: int = 0
    generation_batch: int = 16

    def __post_init__(self) -> None:
        if self.samples < 0 or self.rank < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("samples >= 0, rank, epochs and batch_size >= 1")
        if not (0 < self.temperature <= 2 and self.learning_rate > 0 and self.beta > 0 and self.sft_weight >= 0):
            raise ValueError("temperature in (0, 2], learning_rate and beta > 0, sft_weight >= 0")
        if self.loss not in ("sft", "dpo"):
            raise ValueError(f"loss must be 'sft' or 'dpo', got {self.loss!r}")


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    persona: str
    chosen: str
    rejected: str
    margin: float


@dataclass
class TrainedAdapter:
    name: str
    value: str
    direction: int
    pairs: int
    losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)


def adapter_name(value: str, direction: int) -> str:
    return f"{value}-{'up' if direction > 0 else 'down'}"


def adapter_targets(bundle: Path) -> dict[str, tuple[str, int]]:
    """Folder name -> (value, direction) of every value adapter card in ``bundle/adapters`` (the weights are
    checked when the adapters are loaded)."""
    folder = bundle / "adapters"
    out: dict[str, tuple[str, int]] = {}
    if not folder.is_dir():
        return out
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        card_path = sub / ADAPTER_CARD
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
            out[sub.name] = (str(card["value"]), int(card["direction"]))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
            from causalguard.errors import ConfigError

            raise ConfigError.single(
                str(card_path),
                "missing or not a value-adapter card with value and direction",
                hint="re-run 'causalguard levers adapters'",
            ) from None
    return out


def _source_id(value: str, pole: str, sample: int | None) -> str:
    return f"adapter-source:{value}:{pole}:" + ("greedy" if sample is None else f"s{sample}")


def candidate_replies(
    lm: LoadedModel,
    values: Sequence[str],
    prompts: Sequence[Prompt],
    personas: Sequence[Persona],
    work: Path,
    settings: AdapterSettings,
    *,
    restart: bool = False,
    log: Callable[[str], None] = print,
    backend: ReplyBackend | None = None,
) -> dict[tuple[str, str, str], str]:
    """Greedy and sampled replies under every value's two reply-style wordings: (condition, persona, prompt)
    -> text. Two checkpointed runs in ``work/greedy`` and ``work/sampled``."""
    if any(p.split != "dev" for p in prompts):
        raise ValueError("value adapters are trained on dev prompts only")
    base = {
        "model": lm.fingerprint,
        "prompts": [p.id for p in prompts],
        "personas": [asdict(p) for p in personas],
        "batch_size": settings.generation_batch,
        "kind": "adapter-candidates",
        "values": list(values),
    }
    out: dict[tuple[str, str, str], str] = {}
    runs: list[tuple[str, ReplySettings, list[int | None]]] = [
        ("greedy", ReplySettings(settings.max_new_tokens), [None])
    ]
    if settings.samples:
        runs.append(
            (
                "sampled",
                ReplySettings(settings.max_new_tokens, settings.temperature, settings.seed),
                list(range(settings.samples)),
            )
        )
    for name, reply_settings, samples in runs:
        conditions = [
            ReplyCondition(_source_id(v, pole, s), (REPLY_STYLE_WORDINGS[v][k],))
            for v in values
            for k, pole in ((0, "+"), (1, "-"))
            for s in samples
        ]
        store = ReplyStore(work / name, {**base, "settings": asdict(reply_settings), "run": name}, restart=restart)
        log(
            f"adapter candidates ({name}): {len(conditions)} wordings x {len(personas)} personas x "
            f"{len(prompts)} prompts"
        )
        replies = run_replies(
            lm,
            conditions,
            personas,
            prompts,
            reply_settings,
            store,
            batch_size=settings.generation_batch,
            progress=lambda done, total: log(f"  {done}/{total} replies"),
            backend=backend,
        )
        out.update({key: reply.text for key, reply in replies.items()})
    return out


def preference_pairs(
    value: str,
    direction: int,
    candidates: dict[tuple[str, str, str], str],
    specific: dict[tuple[str, str, str], float],
    prompts: Sequence[Prompt],
    personas: Sequence[Persona],
    calibration: QualityCalibration,
    margin: float,
) -> list[PreferencePair]:
    """The (chosen, rejected) pair per prompt and persona for ``value`` in ``direction`` (module docstring,
    step 2). ``specific``: each candidate's score on the value minus its mean on the others."""
    pairs = []
    for persona in personas:
        for prompt in prompts:
            poles: dict[str, list[tuple[float, str]]] = {"+": [], "-": []}
            for (condition, persona_id, prompt_id), text in candidates.items():
                if persona_id != persona.id or prompt_id != prompt.id:
                    continue
                _, source_value, pole, _ = condition.split(":")
                if source_value != value:
                    continue
                wording = REPLY_STYLE_WORDINGS[value][0 if pole == "+" else 1]
                quality = text_quality(prompt.text, text, served_system_prompt(persona.system_prompt, (wording,)))
                if calibration.degraded(quality):
                    continue
                poles[pole].append((specific[(condition, persona_id, prompt_id)], text))
            toward, away = ("+", "-") if direction > 0 else ("-", "+")
            if not poles[toward] or not poles[away]:
                continue
            chosen = max(poles[toward], key=lambda c: direction * c[0])
            rejected = min(poles[away], key=lambda c: direction * c[0])
            gap = direction * (chosen[0] - rejected[0])
            if gap >= margin:
                pairs.append(PreferencePair(prompt.id, persona.id, chosen[1], rejected[1], float(gap)))
    return pairs


def _sequence_logprobs(
    model: Any,
    rows: Sequence[tuple[list[int], list[int]]],
    pad: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of each reply after its context, and the reply's token count (right padding)."""
    width = max(len(c) + len(r) for c, r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    reply_mask = torch.zeros((len(rows), width))
    for b, (context, reply) in enumerate(rows):
        sequence = context + reply
        ids[b, : len(sequence)] = torch.tensor(sequence)
        attention[b, : len(sequence)] = 1
        reply_mask[b, len(context) : len(sequence)] = 1
    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1]
    logprobs = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
    mask = reply_mask[:, 1:]
    return (logprobs * mask).sum(1), mask.sum(1)


def train_adapter(
    lm: LoadedModel,
    rows: Sequence[tuple[list[int], list[int], list[int]]],
    settings: AdapterSettings,
    out: Path,
    card: dict[str, Any],
    *,
    log: Callable[[str], None] = print,
) -> TrainedAdapter:
    """Train one adapter on (context, chosen, rejected) token rows and save it to ``out`` (a PEFT folder plus
    ``adapter.json``). The live model is never modified: training runs on a copy."""
    from peft import LoraConfig, get_peft_model

    generator = random.Random(settings.seed)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(settings.seed)  # LoRA's initialisation, on this process's generator; restored below
    try:
        base = copy.deepcopy(lm.model)
        config = LoraConfig(
            r=settings.rank, lora_alpha=settings.alpha, lora_dropout=0.0, target_modules=list(settings.target_modules)
        )
        peft_model = get_peft_model(base, config)
    finally:
        torch.random.set_rng_state(torch_state)
    pad = lm.pad_token_id
    dpo = settings.loss == "dpo"
    with torch.no_grad():
        reference = []
        for start in range(0, len(rows) if dpo else 0, settings.batch_size):  # SFT needs no reference
            chunk = rows[start : start + settings.batch_size]
            chosen, _ = _sequence_logprobs(lm.model, [(c, y) for c, y, _ in chunk], pad)
            rejected, _ = _sequence_logprobs(lm.model, [(c, n) for c, _, n in chunk], pad)
            reference += list(zip(chosen.tolist(), rejected.tolist(), strict=True))
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=settings.learning_rate)
    data: list[tuple[tuple[list[int], list[int], list[int]], tuple[float, float]]] = list(
        zip(rows, reference if dpo else [(0.0, 0.0)] * len(rows), strict=True)
    )
    result = TrainedAdapter(out.name, card["value"], card["direction"], len(rows))
    peft_model.train()
    for epoch in range(settings.epochs):
        generator.shuffle(data)
        total = correct = 0.0
        batches = 0
        for start in range(0, len(data), settings.batch_size):
            batch = data[start : start + settings.batch_size]
            chosen, counts = _sequence_logprobs(peft_model, [(c, y) for (c, y, _), _ in batch], pad)
            nll = (-(chosen / counts)).mean()
            if dpo:
                rejected, _ = _sequence_logprobs(peft_model, [(c, n) for (c, _, n), _ in batch], pad)
                ref = torch.tensor([r for _, r in batch])
                margin = settings.beta * ((chosen - ref[:, 0]) - (rejected - ref[:, 1]))
                loss = -torch.nn.functional.logsigmoid(margin).mean() + settings.sft_weight * nll
            else:  # the preference accuracy is not trained on: report the likelihood's gain over the first epoch
                margin = -nll.detach().reshape(1)
                loss = nll
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            total += float(loss.detach())
            correct += float((margin > 0).float().mean())
            batches += 1
        result.losses.append(total / batches)
        result.accuracies.append(correct / batches if dpo else math.nan)
        log(
            f"  {out.name}: epoch {epoch + 1}/{settings.epochs}, loss {result.losses[-1]:.3f}"
            + (f", preference accuracy {result.accuracies[-1]:.2f}" if dpo else "")
        )
    peft_model.eval()
    for parameter in peft_model.parameters():  # half the size on disk; the hooks compute in float32
        if parameter.requires_grad:
            parameter.data = parameter.data.to(torch.float16)
    out.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(out))
    (out / "README.md").unlink(missing_ok=True)  # peft's empty model-card template; adapter.json is the card
    doc = {
        **card,
        "schema": ADAPTER_SCHEMA,
        "training": {
            **card.get("training", {}),
            "losses": result.losses,
            **({"preference_accuracy": result.accuracies} if dpo else {}),
        },
    }
    (out / ADAPTER_CARD).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return result


def train_value_adapters(
    lm: LoadedModel,
    judge: ValueJudge,
    dims: Sequence[str],
    values: Sequence[str],
    directions: Sequence[int],
    prompts: Sequence[Prompt],
    personas: Sequence[Persona],
    calibration: QualityCalibration,
    work: Path,
    out: Path,
    settings: AdapterSettings,
    *,
    restart: bool = False,
    log: Callable[[str], None] = print,
    backend: ReplyBackend | None = None,
) -> list[TrainedAdapter]:
    """Train the adapters for ``values`` x ``directions`` into ``out`` (``adapters/``) and reseal the bundle.

    An adapter whose folder already holds a card trained with the same data and settings is kept, so an
    interrupted run resumes at the next adapter."""
    missing = [v for v in values if v not in REPLY_STYLE_WORDINGS or v not in dims]
    if missing:
        raise ValueError(f"no reply-style wordings or judge dimension for {', '.join(missing)}")
    candidates = candidate_replies(
        lm, values, prompts, personas, work, settings, restart=restart, log=log, backend=backend
    )
    keys = sorted(candidates)
    scores = judge.score([candidates[k] for k in keys])
    column = {d: k for k, d in enumerate(dims)}
    contexts = {(p.id, q.id): chat_prompt_ids(lm, q.messages(), p.system_prompt, []) for p in personas for q in prompts}
    eos = lm.tokenizer.eos_token_id

    def tokens(text: str) -> list[int]:
        return list(lm.tokenizer(text, add_special_tokens=False).input_ids) + ([eos] if eos is not None else [])

    trained = []
    for value in values:
        j = column[value]
        others = [k for d, k in column.items() if d != value]
        specific = {key: float(scores[i, j] - np.mean(scores[i, others])) for i, key in enumerate(keys)}
        for direction in directions:
            name = adapter_name(value, direction)
            pairs = preference_pairs(
                value, direction, candidates, specific, prompts, personas, calibration, settings.margin
            )
            card = {
                "model_fingerprint": lm.fingerprint,
                "model": lm.name,
                "value": value,
                "direction": direction,
                "training": {
                    "method": f"{settings.loss.upper()} on the chosen reply, LoRA (peft), context "
                    "distillation of judge-ranked replies under the reply-style wordings",
                    "prompts": [q.id for q in prompts],
                    "prompt_split": "dev",
                    "personas": [asdict(p) for p in personas],
                    "settings": asdict(settings),
                    "wordings": list(REPLY_STYLE_WORDINGS[value]),
                    "pairs": len(pairs),
                    "mean_margin": float(np.mean([p.margin for p in pairs])) if pairs else 0.0,
                },
            }
            folder = out / name
            if _same_training(folder, card):
                log(f"{name}: already trained with these data and settings; kept")
                trained.append(TrainedAdapter(name, value, direction, len(pairs)))
                continue
            if len(pairs) < 8:
                log(f"{name}: only {len(pairs)} preference pairs (need 8); no adapter")
                continue
            gap = float(np.mean([p.margin for p in pairs]))
            log(f"{name}: {len(pairs)} preference pairs (mean specific-score gap {gap:.2f})")
            persona_of = {p.id: p for p in personas}
            rows = [
                (contexts[(persona_of[p.persona].id, p.prompt)], tokens(p.chosen), tokens(p.rejected)) for p in pairs
            ]
            trained.append(train_adapter(lm, rows, settings, folder, card, log=log))
    seal_bundle(out.parent)  # the adapters live in their bundle's adapters/ folder
    return trained


def _same_training(folder: Path, card: dict[str, Any]) -> bool:
    path = folder / ADAPTER_CARD
    if not path.is_file():
        return False
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    mine = json.loads(json.dumps(card["training"]))  # tuples as JSON lists, as the card holds them
    theirs = {k: v for k, v in old.get("training", {}).items() if k in mine}
    return bool(
        old.get("model_fingerprint") == card["model_fingerprint"]
        and theirs == mine
        and math.isfinite(sum(old["training"].get("losses", [math.nan])))
    )
