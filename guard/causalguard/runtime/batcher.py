"""Continuous batching: concurrent requests share one decode loop, rows joining and leaving as they go.

    with ContinuousBatcher(lm, max_rows=16) as batcher:
        job = batcher.submit(GenerationRow(prompt_ids, interventions, seed=7), DecodeSettings(max_new_tokens=64))
        generated = job.result()                     # or pass on_token= to stream

One worker thread owns the loop. Each step it

1. admits waiting requests, up to ``max_rows`` running, prefilled together in one forward pass (rows
   right-aligned, padding masked) and joined to the running batch's KV cache, left-padded to a common
   width. Each row first reuses the keys and values of the longest prompt prefix it shares with a
   recent request under the same SAE interventions (``runtime/prefix_cache.py``): chatbots
   send the same operator prompt and role levers every time, so only a conversation's own tokens are
   computed. Causal attention makes a reused prefix what the prefill would compute;
2. runs one decode step for every running row at once. Each row keeps its own logical positions
   (``position_ids``), SAE interventions (a per-row ``SteeringPlan`` for the dispatcher hooks, which
   must already be installed), sampling generator, token budget and stop strings;
3. drops finished rows (end of sequence, budget, stop string, cancelled) and trims cache columns that
   are padding for every row left.

Greedy rows give the tokens the same request gets from ``generate_rows`` alone, up to float rounding
of batched kernels and of a prefix computed in another pass (tested under mixed profiles). Callbacks
run on the worker thread and must be quick; one that raises cancels only its own row. A failed
forward pass fails the rows in it, a row that cannot be sampled fails alone, and nothing that goes
wrong in a step stops the loop: one bad request never wedges the others.

A guided row (``GenerationRow.guidance``) runs as two rows of the batch: itself and an unconditional
twin under its negative prompt (``runtime/guidance.py``). The pair picks one token from the guided
log-probabilities, both are fed it, and they join, count against ``max_rows`` and leave together.

A job may carry a ``deadline`` (``time.monotonic()`` seconds): a row still running then is ended
``cancelled`` with a ``DeadlineExceeded`` error at its next step, and leaves the batch. ``health()``
is the loop's watchdog view: whether the worker lives, and how long work has waited for a step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import torch

from causalguard.adapters.hf.hooks import RowPlan, SteeringPlan, steer
from causalguard.models.loaded import LoadedModel
from causalguard.runtime.generation import (
    FinishReason,
    Generated,
    GenerationRow,
    pick_token,
    row_generator,
    stop_window,
)
from causalguard.runtime.guidance import guided_logits
from causalguard.runtime.prefix_cache import PrefixCache, pad_left, stacked_prefixes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodeSettings:
    """How one request decodes: its token budget, sampling (0 = greedy) and stop strings."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


class BatcherClosedError(RuntimeError):
    """A request was submitted to a closed batcher."""


class DeadlineExceeded(TimeoutError):
    """A request ran past its deadline and was removed from the batch."""


@dataclass(frozen=True)
class LoopHealth:
    """The decode loop as a watchdog sees it.

    ``stalled_seconds``: how long the loop has had work (running or waiting rows) without finishing a
    step or an admission; 0 when idle. A loop whose worker died is ``alive=False``."""

    alive: bool
    stalled_seconds: float
    rows: int
    waiting: int
    failed_steps: int

    def stuck(self, threshold_seconds: float) -> bool:
        """True when the loop is dead, or has had work for ``threshold_seconds`` without progress."""
        return not self.alive or self.stalled_seconds > threshold_seconds


@dataclass(eq=False)
class BatchJob:
    """One submitted request: wait for it with ``result()``; set ``cancel`` to stop it at the next step."""

    row: GenerationRow
    settings: DecodeSettings
    cancel: threading.Event = field(default_factory=threading.Event)
    on_token: Callable[[int], None] | None = None  # every new token (end of sequence excluded), worker thread
    on_end: Callable[[], None] | None = None  # once, when the request ends however it ends, worker thread
    deadline: float | None = None  # time.monotonic() past which the row is removed (DeadlineExceeded)
    tokens: list[int] = field(default_factory=list)
    hit_eos: bool = False  # ended by the end-of-sequence token (finish "stop" is also a stop string)
    _done: threading.Event = field(default_factory=threading.Event)
    _finish: FinishReason = "length"
    _error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> Generated:
        """The generated tokens once the request has finished (raises what failed it)."""
        if not self._done.wait(timeout):
            raise TimeoutError("the request has not finished")
        if self._error is not None:
            raise self._error
        return Generated(list(self.tokens), self._finish)

    def _end(self, finish: FinishReason, error: BaseException | None = None) -> None:
        if self._done.is_set():  # ended already (a failure path may reach a row twice)
            return
        self._finish, self._error = finish, error
        self._done.set()
        if self.on_end is not None:
            try:
                self.on_end()
            except Exception:  # a failing consumer must not stop the loop
                log.warning("a request's on_end callback failed", exc_info=True)


@dataclass(eq=False)
class _Running:
    """A row of the running batch: its job, its real tokens in the cache and the token to feed next."""

    job: BatchJob
    generator: torch.Generator | None
    cached: int  # real (unpadded) tokens in the cache: the next token's logical position
    next_token: int
    twin: _Running | None = None  # a guided row's unconditional twin (a row of the batch too)
    is_twin: bool = False


def _row_plan(entry: _Running) -> RowPlan:
    """A running row's steering: its job's interventions, or none for a guided row's twin (the unconditional
    side, under the negative prompt), as at prefill."""
    row = entry.job.row
    if entry.is_twin and row.guidance is not None:
        return RowPlan((), len(row.guidance.negative_prompt))
    return RowPlan(row.interventions, len(row.prompt))


def _cost(job: BatchJob) -> int:
    """Batch rows a job takes: two for a guided row (itself and its twin)."""
    return 2 if job.row.guidance is not None else 1


class ContinuousBatcher:
    """A decode loop shared by concurrent requests on one model (see the module docstring)."""

    def __init__(
        self, lm: LoadedModel, *, max_rows: int = 16, prefix_cache_tokens: int = 2048, name: str = "causalguard-batcher"
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        self.lm, self.max_rows = lm, max_rows
        self.prefixes = PrefixCache(prefix_cache_tokens)  # the worker's alone
        self._eos = {int(lm.tokenizer.eos_token_id)} if lm.tokenizer.eos_token_id is not None else set()
        self._waiting: deque[BatchJob] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self._running: list[_Running] = []
        self._cache: Any = None
        self._mask: torch.Tensor | None = None  # [rows, cache width]: 1 where a row has a real token
        self.steps = 0  # decode steps run (for tests and metrics)
        self.peak_rows = 0
        self.failed_steps = 0  # loop iterations that failed and ended their rows (for the watchdog)
        self._progress = time.monotonic()  # last time the loop finished an iteration or went idle
        self._admitting = 0  # jobs taken off the queue and being prefilled now
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # ---- the public side ----------------------------------------------------------------------
    def submit(
        self,
        row: GenerationRow,
        settings: DecodeSettings,
        *,
        cancel: threading.Event | None = None,
        on_token: Callable[[int], None] | None = None,
        on_end: Callable[[], None] | None = None,
        deadline: float | None = None,
    ) -> BatchJob:
        """Queue a request; it joins the running batch at the next step with room (``max_rows``).
        ``deadline`` (``time.monotonic()`` seconds) ends it ``cancelled`` with ``DeadlineExceeded`` if it
        is still running then."""
        if not row.prompt:
            raise ValueError("a generation row needs at least one prompt token")
        job = BatchJob(
            row, settings, cancel if cancel is not None else threading.Event(), on_token, on_end, deadline=deadline
        )
        with self._wake:
            if self._closing:
                raise BatcherClosedError("the batcher is closed")
            if not self._thread.is_alive():
                raise BatcherClosedError("the batcher's decode loop has stopped")
            self._waiting.append(job)
            self._wake.notify()
        return job

    @property
    def rows(self) -> int:
        """Rows decoding now."""
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def health(self) -> LoopHealth:
        """The watchdog's view of the loop (see ``LoopHealth``); safe to call from any thread."""
        rows, waiting = len(self._running), len(self._waiting) + self._admitting
        busy = rows > 0 or waiting > 0
        stalled = time.monotonic() - self._progress if busy else 0.0
        return LoopHealth(self._thread.is_alive() or self._closing, max(0.0, stalled), rows, waiting, self.failed_steps)

    def close(self, timeout: float | None = None) -> None:
        """Stop the loop: running and waiting requests end ``cancelled``; joins the worker (idempotent)."""
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def __enter__(self) -> ContinuousBatcher:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # ---- the loop ------------------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            with torch.inference_mode():
                while True:
                    with self._wake:
                        while not self._closing and not self._waiting and not self._running:
                            self._progress = time.monotonic()
                            self._wake.wait()
                        if self._closing:
                            break
                        admitted: list[BatchJob] = []
                        taken = len(self._running)
                        while self._waiting and (
                            taken + _cost(self._waiting[0]) <= self.max_rows or (not admitted and not self._running)
                        ):
                            taken += _cost(self._waiting[0])
                            admitted.append(self._waiting.popleft())
                        self._admitting = len(admitted)
                    try:
                        if admitted:
                            self._admit(admitted)
                        if self._running:
                            self._step()
                    except Exception as exc:  # never let one iteration stop the loop for everyone
                        self._fail_iteration(admitted, exc)
                    self._admitting = 0
                    self._progress = time.monotonic()
        finally:  # however the loop ends, no request is left waiting for it
            for entry in self._running:
                entry.job._end("cancelled")
            with self._wake:
                left, self._waiting = list(self._waiting), deque()
            for job in left:
                job._end("cancelled")
            self._running, self._cache, self._mask = [], None, None
            self.prefixes.clear()

    def _fail_iteration(self, admitted: Sequence[BatchJob], exc: Exception) -> None:
        """An iteration failed outside the guarded forward passes: end its rows with the error, start clean."""
        self.failed_steps += 1
        log.error(
            "decode loop iteration failed (%s): ending %d rows",
            type(exc).__name__,
            len(self._running) + len(admitted),
            exc_info=True,
        )
        for job in [*admitted, *(entry.job for entry in self._running)]:
            job._end("length", exc)
        self._running, self._cache, self._mask = [], None, None

    def _admit(self, jobs: Sequence[BatchJob]) -> None:
        """Prefill ``jobs`` in one forward pass, take their first tokens, and join their caches to the running
        batch. Each row reuses its longest cached prompt prefix and computes only the rest; rows are
        right-aligned, so the padding between a row's prefix and its new tokens is masked out."""
        live = []
        now = time.monotonic()
        for job in jobs:
            if job.cancel.is_set():
                job._end("cancelled")
            elif job.deadline is not None and now > job.deadline:
                job._end("cancelled", DeadlineExceeded("the request waited past its deadline"))
            else:
                live.append(job)
        if not live:
            return
        # every job's row, then the twins of the guided ones (no interventions: the unconditional side)
        owners: list[tuple[BatchJob, bool]] = [(job, False) for job in live]
        owners += [(job, True) for job in live if job.row.guidance is not None]
        prompts = [
            list(job.row.guidance.negative_prompt) if twin and job.row.guidance is not None else list(job.row.prompt)
            for job, twin in owners
        ]
        kept = [() if twin else job.row.interventions for job, twin in owners]
        found = [
            self.prefixes.lookup(prompt, interventions) for prompt, interventions in zip(prompts, kept, strict=True)
        ]
        reused = [n for n, _ in found]
        tails = [prompt[n:] for prompt, n in zip(prompts, reused, strict=True)]
        before, after = max(reused), max(len(tail) for tail in tails)
        pad = int(self.lm.tokenizer.pad_token_id or 0)
        ids = torch.tensor([[pad] * (after - len(t)) + t for t in tails], dtype=torch.long)
        mask = torch.tensor(
            [
                [0] * (before - n) + [1] * n + [0] * (after - len(t)) + [1] * len(t)
                for n, t in zip(reused, tails, strict=True)
            ],
            dtype=torch.long,
        )
        positions = torch.tensor(
            [[0] * (after - len(t)) + list(range(n, n + len(t))) for n, t in zip(reused, tails, strict=True)],
            dtype=torch.long,
        )
        cache = _cache_of(stacked_prefixes(found, before) if before else [])
        rows = tuple(RowPlan(interventions, len(prompt)) for interventions, prompt in zip(kept, prompts, strict=True))
        plan = SteeringPlan(rows) if any(r.interventions for r in rows) else None
        try:
            with steer(plan):
                out = self.lm.model(
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=positions,
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
        except Exception as exc:
            log.error("prefill failed for %d requests: %s", len(live), exc, exc_info=True)
            for job in live:
                job._end("length", exc)
            return
        layers = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        real = mask.bool()
        for row, (prompt, interventions) in enumerate(zip(prompts, kept, strict=True)):
            if len(prompts) == 1:
                self.prefixes.store(prompt, interventions, layers)
            else:
                self.prefixes.store(
                    prompt,
                    interventions,
                    [(k[row : row + 1, :, real[row]], v[row : row + 1, :, real[row]]) for k, v in layers],
                )
        twin_rows = {id(job): row for row, (job, twin) in enumerate(owners) if twin}
        keep, entries = [], []
        for row, job in enumerate(live):
            generator = row_generator(job.row.seed) if job.settings.temperature > 0 else None
            entry = _Running(job, generator, len(prompts[row]), -1)
            twin_row = twin_rows.get(id(job))
            if twin_row is not None:
                entry.twin = _Running(job, None, len(prompts[twin_row]), -1, is_twin=True)
            logits = self._row_logits(entry, out.logits[:, -1], row, twin_row)
            if not self._take(entry, logits):  # a row done at its first token never joins
                keep.append(row)
                entries.append(entry)
                if entry.twin is not None and twin_row is not None:
                    entry.twin.next_token = entry.next_token
                    keep.append(twin_row)
                    entries.append(entry.twin)
        if keep:
            index = torch.tensor(keep, dtype=torch.long)
            self._join(entries, [(k[index], v[index]) for k, v in layers], mask[index])

    def _join(
        self, entries: list[_Running], layers: list[tuple[torch.Tensor, torch.Tensor]], mask: torch.Tensor
    ) -> None:
        """Add prefilled rows (their per-layer keys and values, and mask) to the running batch, both left-padded
        to a common width."""
        if self._cache is None or self._mask is None:
            self._cache, self._mask, self._running = _cache_of(layers), mask, list(entries)
            self.peak_rows = max(self.peak_rows, len(entries))
            return
        have, width = self._mask.shape[1], mask.shape[1]
        target = max(have, width)
        self._cache = _cache_of(
            [
                (
                    torch.cat([pad_left(mine.keys, target - have), pad_left(keys, target - width)]),
                    torch.cat([pad_left(mine.values, target - have), pad_left(values, target - width)]),
                )
                for mine, (keys, values) in zip(self._cache.layers, layers, strict=True)
            ]
        )
        self._mask = torch.cat(
            [
                torch.nn.functional.pad(self._mask, (target - have, 0)),
                torch.nn.functional.pad(mask, (target - width, 0)),
            ]
        )
        self._running.extend(entries)
        self.peak_rows = max(self.peak_rows, len(self._running))

    def _step(self) -> None:
        """One decode step for every running row, then drop the rows that finished."""
        assert self._mask is not None
        running = self._running
        ids = torch.tensor([[entry.next_token] for entry in running], dtype=torch.long)
        mask = torch.cat([self._mask, torch.ones((len(running), 1), dtype=torch.long)], dim=1)
        positions = torch.tensor([[entry.cached] for entry in running], dtype=torch.long)
        rows = tuple(_row_plan(entry) for entry in running)
        plan = SteeringPlan(rows) if any(r.interventions for r in rows) else None
        try:
            with steer(plan):
                out = self.lm.model(
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=positions,
                    past_key_values=self._cache,
                    use_cache=True,
                )
        except Exception as exc:
            log.error("decode step failed for %d rows: %s", len(running), exc, exc_info=True)
            for entry in running:
                entry.job._end("length", exc)
            self._running, self._cache, self._mask = [], None, None
            return
        self.steps += 1
        self._mask = mask
        row_of = {id(entry): row for row, entry in enumerate(running)}
        keep = []
        for row, entry in enumerate(running):
            entry.cached += 1
            if entry.is_twin:
                continue  # decided with its guided row
            twin_row = row_of[id(entry.twin)] if entry.twin is not None else None
            if not self._take(entry, self._row_logits(entry, out.logits[:, -1], row, twin_row)):
                keep.append(row)
                if entry.twin is not None and twin_row is not None:
                    entry.twin.next_token = entry.next_token
                    keep.append(twin_row)
        keep.sort()
        if len(keep) < len(running):
            self._drop(keep)

    @staticmethod
    def _row_logits(entry: _Running, logits: torch.Tensor, row: int, twin_row: int | None) -> torch.Tensor:
        """A row's next-token scores: its own, or guided by its twin's."""
        guidance = entry.job.row.guidance
        if guidance is None or twin_row is None:
            return logits[row]
        return guided_logits(logits[row], logits[twin_row], guidance.scale)

    def _take(self, entry: _Running, logits: torch.Tensor) -> bool:
        """Pick ``entry``'s next token from ``logits``; True when the row has finished."""
        job, settings = entry.job, entry.job.settings
        if job.cancel.is_set():
            job._end("cancelled")
            return True
        if job.deadline is not None and time.monotonic() > job.deadline:
            job._end("cancelled", DeadlineExceeded("the request ran past its deadline and was removed"))
            return True
        try:
            token = pick_token(logits, settings.temperature, settings.top_p, entry.generator)
        except Exception as exc:  # this row alone cannot go on
            log.warning("a row could not be sampled (%s); it ends with the error", type(exc).__name__)
            job._end("length", exc)
            return True
        if token in self._eos:
            job.hit_eos = True
            job._end("stop")
            return True
        job.tokens.append(token)
        if job.on_token is not None:
            try:
                job.on_token(token)
            except Exception as exc:
                job._end("cancelled", exc)
                return True
        if settings.stop and self._hit_stop(job.tokens, settings.stop):
            job._end("stop")
            return True
        if len(job.tokens) >= settings.max_new_tokens:
            job._end("length")
            return True
        entry.next_token = token
        return False

    def _hit_stop(self, tokens: Sequence[int], stops: Sequence[str]) -> bool:
        # a stop string first appears at the end of the text: decode only the last few tokens
        tail = self.lm.tokenizer.decode(tokens[-stop_window(stops) :], skip_special_tokens=True)
        return any(s in tail for s in stops)

    def _drop(self, keep: list[int]) -> None:
        """Keep only rows ``keep``; cut cache columns that are padding for every row left."""
        if not keep:
            self._running, self._cache, self._mask = [], None, None
            return
        assert self._mask is not None
        index = torch.tensor(keep, dtype=torch.long)
        mask = self._mask[index]
        start = int(mask.any(dim=0).long().argmax())  # the first column some row still uses
        self._cache = _cache_of(
            [(layer.keys[index, :, start:], layer.values[index, :, start:]) for layer in self._cache.layers]
        )
        self._mask = mask[:, start:]
        self._running = [self._running[row] for row in keep]


def _cache_of(layers: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> Any:
    """A KV cache holding per-layer keys and values ``[rows, kv heads, width, head dim]``."""
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=layers)
