"""Hugging Face generation for guarded chat: one code path for serving, audits and behaviour runs.

    rows = [GenerationRow(prompt_ids, interventions, seed=7), ...]
    outs = generate_rows(lm, rows, max_new_tokens=64, temperature=0.7)

- Prompts are left-padded into one batch; each row carries its own SAE interventions (a per-row
  ``SteeringPlan`` for the dispatcher hooks, which must already be installed on the model).
- A row with ``guidance`` (``runtime/guidance.py``) decodes beside an unconditional twin row, added to
  the batch and removed from the results here; its tokens come from the guided log-probabilities.
- Sampling never touches torch's global RNG: ``SeededSampler`` draws every row's next token from
  its own ``torch.Generator`` (seeded from the row's seed, or from the OS when there is none) and
  hands it to ``generate`` as the only finite logit, so greedy decoding picks it. A seeded row gives
  the same text whatever else runs in the process at the same time.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from causalguard.adapters.hf.hooks import RowPlan, SteeringPlan, steer
from causalguard.adapters.hf.interventions import Intervention
from causalguard.models.batching import left_padded
from causalguard.models.loaded import LoadedModel
from causalguard.runtime.conversation import Message, compose_messages
from causalguard.runtime.guidance import Guidance, TwinLayout, guided_logits

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class GenerationRow:
    """One conversation to continue: its prompt token ids, its interventions (SAE edits, steering
    vectors), its sampling seed and, for a guided lever, its classifier-free guidance."""

    prompt: Sequence[int]
    interventions: tuple[Intervention, ...] = ()
    seed: int | None = None
    guidance: Guidance | None = None


@dataclass(frozen=True)
class Generated:
    tokens: list[int]  # new tokens, without the end-of-sequence token or padding
    finish_reason: FinishReason


def chat_prompt_ids(
    lm: LoadedModel, messages: Sequence[Message], operator_prompt: str | None, instructions: Sequence[str]
) -> list[int]:
    """Token ids of a guarded conversation: one system message (operator prompt, the client's system
    text, role-lever instructions), the other turns, and the assistant's generation prompt."""
    composed = compose_messages(messages, operator_prompt, instructions)
    text = lm.tokenizer.apply_chat_template(composed, tokenize=False, add_generation_prompt=True)
    return list(lm.tokenizer(text, add_special_tokens=False).input_ids)


class SeededSampler:
    """A logits processor that samples each row's next token from its own generator.

    It returns logits that are ``-inf`` everywhere except the drawn token, so ``generate`` runs with
    ``do_sample=False`` and no global RNG is involved."""

    def __init__(self, temperature: float, seeds: Sequence[int | None], top_p: float = 1.0) -> None:
        if not temperature > 0:
            raise ValueError("SeededSampler needs a temperature > 0 (use greedy decoding otherwise)")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.temperature = temperature
        self.top_p = top_p
        self.generators = [row_generator(seed) for seed in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        picked = [
            sample_token(scores[row], self.temperature, self.top_p, self.generators[row])
            for row in range(scores.shape[0])
        ]
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(scores.shape[0]), torch.tensor(picked)] = 0.0
        return out


def row_generator(seed: int | None) -> torch.Generator:
    """A row's own random generator: seeded from ``seed``, or from the OS when there is none."""
    gen = torch.Generator()
    gen.manual_seed(int(seed) if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
    return gen


# Below this temperature sampling is greedy in all but name; dividing by a smaller one (a denormal such as
# 5e-324 underflows to 0 in float32) would turn the logits into inf and the probabilities into NaN.
MIN_SAMPLING_TEMPERATURE = 1e-6


class SamplingError(ValueError):
    """A row's next-token distribution cannot be sampled (non-finite logits from the model)."""


def sample_token(scores: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> int:
    """Draw one token from a row's next-token ``scores`` (1-d logits) at ``temperature``, keeping the
    smallest set of tokens whose probability reaches ``top_p`` (the top token always stays).

    Any positive temperature is safe: the logits are shifted so the top one is 0 and the temperature is
    floored at ``MIN_SAMPLING_TEMPERATURE``, so the top token keeps a finite, positive probability. Raises
    ``SamplingError`` when ``scores`` themselves are not finite where it matters (NaN, or no finite logit)."""
    logits = scores.float()
    top = logits.max()
    if not torch.isfinite(top) or bool(torch.isnan(logits).any()):
        raise SamplingError("the model's next-token logits are not finite: this row cannot be sampled")
    probs = torch.softmax((logits - top) / max(float(temperature), MIN_SAMPLING_TEMPERATURE), dim=-1)
    if top_p < 1:
        ordered, order = probs.sort(dim=-1, descending=True)
        outside = ordered.cumsum(dim=-1) - ordered >= top_p
        probs = probs.scatter(-1, order, ordered.masked_fill(outside, 0.0))
    return int(torch.multinomial(probs, 1, generator=generator)[0])


def sampling_kwargs(temperature: float, seeds: Sequence[int | None], top_p: float = 1.0) -> dict[str, Any]:
    """``generate`` keyword arguments: greedy for ``temperature <= 0``, else per-row seeded sampling
    (nucleus sampling with ``top_p < 1``)."""
    if temperature <= 0:
        return {"do_sample": False}
    from transformers import LogitsProcessorList

    return {"do_sample": False, "logits_processor": LogitsProcessorList([SeededSampler(temperature, seeds, top_p)])}


class GuidedPicker:
    """A logits processor for a batch holding guided rows and their twins (``TwinLayout``): each of the
    caller's rows picks its token (greedy, or sampled from its own generator) from its guided scores,
    and its twin is fed the same token. Like ``SeededSampler`` it returns ``-inf`` except the pick."""

    def __init__(self, layout: TwinLayout, temperature: float, seeds: Sequence[int | None], top_p: float = 1.0) -> None:
        self.layout, self.temperature, self.top_p = layout, temperature, top_p
        self.twin = {row: (twin, scale) for row, twin, scale in layout.twins}
        self.generators = [row_generator(seed) for seed in seeds] if temperature > 0 else None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(scores, float("-inf"))
        for row in range(self.layout.rows):
            twin = self.twin.get(row)
            logits = scores[row] if twin is None else guided_logits(scores[row], scores[twin[0]], twin[1])
            token = pick_token(
                logits, self.temperature, self.top_p, self.generators[row] if self.generators is not None else None
            )
            out[row, token] = 0.0
            if twin is not None:
                out[twin[0], token] = 0.0
        return out


def pick_token(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> int:
    """Greedy (no generator) or sampled next token of one row."""
    if generator is None:
        return int(torch.argmax(logits))
    return sample_token(logits, temperature, top_p, generator)


def with_twins(rows: Sequence[GenerationRow]) -> tuple[list[GenerationRow], TwinLayout]:
    """``rows`` followed by one unconditional twin per guided row (its negative prompt, no interventions)."""
    layout = TwinLayout.of([row.guidance for row in rows])
    twins = [
        GenerationRow(tuple(rows[row].guidance.negative_prompt))  # type: ignore[union-attr]
        for row, _, _ in layout.twins
    ]
    return [*rows, *twins], layout


class FirstRowStreamer:
    """Passes only the first row to a transformers streamer (which takes batches of one): a streamed
    guided row decodes beside its twin, whose tokens are the same."""

    def __init__(self, streamer: Any) -> None:
        self.streamer = streamer

    def put(self, value: torch.Tensor) -> None:
        self.streamer.put(value[:1])

    def end(self) -> None:
        self.streamer.end()


class StopText:
    """A stopping criterion: a row is done once its new text contains one of ``stops`` (OpenAI's ``stop``).

    Checked after every token, a stop string first appears at the end of the text, so only the last few
    tokens are decoded (as many as the longest stop string has characters, plus a margin), not the
    whole reply each step."""

    def __init__(self, tokenizer: Any, stops: Sequence[str], prompt_width: int) -> None:
        self.tokenizer, self.stops, self.width = tokenizer, tuple(stops), prompt_width
        self.window = stop_window(self.stops)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **_: Any) -> torch.Tensor:
        start = max(self.width, input_ids.shape[1] - self.window)
        texts = self.tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stops) for t in texts], dtype=torch.bool)


def stop_window(stops: Sequence[str]) -> int:
    """How many trailing tokens to decode to see whether the text now contains a stop string: a token is
    at least one character, so the longest stop string's length, plus a margin for merged pieces."""
    return max(len(s) for s in stops) + 4


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string (excluded), and whether one was found."""
    hits = [text.index(s) for s in stops if s in text]
    return (text[: min(hits)], True) if hits else (text, False)


@functools.cache
def _cancel_criteria_class() -> Any:
    """A transformers stopping criterion that ends generation once its event is set (built on first use)."""
    from transformers import StoppingCriteria

    class CancelCriteria(StoppingCriteria):
        def __init__(self, event: threading.Event) -> None:
            self.event = event

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)

    return CancelCriteria


def cancel_criteria(event: threading.Event) -> Any:
    """A ``StoppingCriteriaList`` for ``generate``/``generate_rows`` that ends generation at the next token
    once ``event`` is set."""
    from transformers import StoppingCriteriaList

    return StoppingCriteriaList([_cancel_criteria_class()(event)])


def generate_rows(
    lm: LoadedModel,
    rows: Sequence[GenerationRow],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    min_new_tokens: int = 0,
    stopping_criteria: Any = None,
    streamer: Any = None,
    cancelled: Any = None,
    top_p: float = 1.0,
    stop: Sequence[str] = (),
) -> list[Generated]:
    """Continue every row in one left-padded batch, each with its own interventions and seed.

    ``cancelled`` (a ``threading.Event``), when set by the end, marks unfinished rows ``cancelled``."""
    if not rows:
        return []
    asked = len(rows)
    rows, layout = with_twins(rows)
    pad = lm.pad_token_id
    ids, mask = left_padded([r.prompt for r in rows], pad)
    width = ids.shape[1]
    plan_rows = tuple(RowPlan(r.interventions, len(r.prompt)) for r in rows)
    steering = SteeringPlan(plan_rows) if any(r.interventions for r in plan_rows) else None
    if layout.twins:
        from transformers import LogitsProcessorList

        kwargs: dict[str, Any] = {
            "do_sample": False,
            "logits_processor": LogitsProcessorList(
                [GuidedPicker(layout, temperature, [r.seed for r in rows[:asked]], top_p)]
            ),
        }
    else:
        kwargs = sampling_kwargs(temperature, [r.seed for r in rows], top_p)
    if min_new_tokens:
        kwargs["min_new_tokens"] = min_new_tokens
    if stop:
        from transformers import StoppingCriteriaList

        criteria = [*(stopping_criteria or []), StopText(lm.tokenizer, stop, width)]
        stopping_criteria = StoppingCriteriaList(criteria)
    if stopping_criteria is not None:
        kwargs["stopping_criteria"] = stopping_criteria
    if streamer is not None:
        kwargs["streamer"] = streamer if not layout.twins else FirstRowStreamer(streamer)
    with torch.inference_mode(), steer(steering):
        out = lm.model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, pad_token_id=pad, **kwargs
        )
    eos = lm.tokenizer.eos_token_id
    was_cancelled = cancelled is not None and cancelled.is_set()
    results = []
    for row in range(asked):
        new = out[row, width:].tolist()
        stopped = eos in new
        new = new[: new.index(eos)] if stopped else new
        new = [t for t in new if t != pad or pad == eos]
        finish: FinishReason = "stop" if stopped else ("cancelled" if was_cancelled else "length")
        results.append(Generated(new, finish))
    return results
