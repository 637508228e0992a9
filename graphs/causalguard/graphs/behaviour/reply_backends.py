"""Where reply runs generate their batches: in this process (``LocalReplies``) or on Ray actors (``RayReplies``).

``run_replies`` fixes the batch layout of a whole run up front (so a resumed run batches every reply
as an uninterrupted one does) and hands the batches still to do to a backend, which calls
``on_batch`` on the driver as each finishes; the driver appends them to the checkpoint. Greedy replies
are the same on either backend (tested), given the same torch thread count (``RayOptions.threads``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Protocol

from causalguard.adapters.hf.hooks import install_steering_hooks
from causalguard.adapters.hf.value_adapters import adapters_in, install_adapter_hooks, residual_layers
from causalguard.graphs.ray_pool import ActorPool, RayOptions, dtype_name, load_checked_model, ray_session, worker_name
from causalguard.models.loaded import LoadedModel
from causalguard.runtime.generation import Generated, GenerationRow, generate_rows

Batches = Sequence[tuple[int, list[GenerationRow]]]  # (batch index, rows)
OnBatch = Callable[[int, list[Generated]], None]


class ReplyBackend(Protocol):
    @property
    def name(self) -> str: ...

    def generate(
        self, lm: LoadedModel, batches: Batches, max_new_tokens: int, temperature: float, on_batch: OnBatch
    ) -> None:
        """Generate every batch, calling ``on_batch(index, outputs)`` on the driver as each finishes.
        Local: SAE interventions need the caller's dispatcher hooks (``install_steering_hooks``)."""
        ...


@dataclass(frozen=True)
class BatcherReplies:
    """Batches through the serving decode loop (``runtime/batcher.py``) and its prefix cache: rows sharing
    a long persona prompt compute it once, which makes prefill-heavy runs several times faster here.
    Greedy replies equal ``LocalReplies``' up to float rounding of batched kernels (as served)."""

    max_rows: int = 32
    prefix_cache_tokens: int = 16384
    name: str = "batcher"

    def generate(
        self, lm: LoadedModel, batches: Batches, max_new_tokens: int, temperature: float, on_batch: OnBatch
    ) -> None:
        from causalguard.runtime.batcher import ContinuousBatcher, DecodeSettings

        with ContinuousBatcher(lm, max_rows=self.max_rows, prefix_cache_tokens=self.prefix_cache_tokens) as batcher:
            for index, rows in batches:
                jobs = [batcher.submit(row, DecodeSettings(max_new_tokens, temperature)) for row in rows]
                on_batch(index, [job.result() for job in jobs])


@dataclass(frozen=True)
class LocalReplies:
    name: str = "local"

    def generate(
        self, lm: LoadedModel, batches: Batches, max_new_tokens: int, temperature: float, on_batch: OnBatch
    ) -> None:
        for index, rows in batches:
            on_batch(index, generate_rows(lm, rows, max_new_tokens=max_new_tokens, temperature=temperature))


class ReplyWorker:
    """One actor: the model loaded once; dispatcher hooks installed on the layers its rows steer, for the
    actor's lifetime (they go with its process)."""

    def __init__(self, model: str, dtype: str, fingerprint: str, threads: int) -> None:
        self.lm = load_checked_model(model, dtype, fingerprint, threads)
        self._hooks = ExitStack()
        self._layers: set[int] = set()
        self._adapted: set[str] = set()  # linear modules with an adapter hook (one hook serves every adapter)

    def generate(
        self, index: int, rows: list[GenerationRow], max_new_tokens: int, temperature: float
    ) -> tuple[int, list[Generated], float, str]:
        started = time.perf_counter()
        interventions = [i for row in rows for i in row.interventions]
        new = residual_layers(interventions) - self._layers
        if new:
            self._hooks.enter_context(install_steering_hooks(self.lm.model, sorted(new)))
            self._layers |= new
        modules = {name for a in adapters_in(interventions) for name in a.pairs} - self._adapted
        if modules:
            self._hooks.enter_context(install_adapter_hooks(self.lm.model, sorted(modules)))
            self._adapted |= modules
        outs = generate_rows(self.lm, rows, max_new_tokens=max_new_tokens, temperature=temperature)
        return index, outs, time.perf_counter() - started, worker_name()


@dataclass
class RayReplies:
    """Generate reply batches on a Ray actor pool (``graphs/ray_pool.py``)."""

    options: RayOptions = field(default_factory=RayOptions)
    name: str = "ray"
    pool: ActorPool | None = None
    workers: dict[str, list[float]] = field(default_factory=dict)  # worker -> [batches, seconds]

    @property
    def actors(self) -> list[Any]:
        return self.pool.actors if self.pool is not None else []

    def generate(
        self, lm: LoadedModel, batches: Batches, max_new_tokens: int, temperature: float, on_batch: OnBatch
    ) -> None:
        if not batches:
            return
        with ray_session(self.options) as ray:
            self.pool = ActorPool(
                ray, ReplyWorker, (lm.name, dtype_name(lm), lm.fingerprint, self.options.torch_threads()), self.options
            )

            def finished(result: tuple[int, list[Generated], float, str]) -> None:
                index, outs, seconds, worker = result
                on_batch(index, outs)
                counted = self.workers.setdefault(worker, [0, 0.0])
                counted[0] += 1
                counted[1] += seconds

            try:
                self.pool.run(
                    batches,
                    lambda actor, _, batch: actor.generate.remote(batch[0], batch[1], max_new_tokens, temperature),
                    finished,
                )
            finally:
                self.pool = None


@dataclass(frozen=True)
class EngineReplies:
    """Batches through llama.cpp's server, for comparing a lever served in-process with its export
    (``levers export``): each row's exact prompt token ids go to ``/completion``; unsteered rows to
    ``plain_url``, steered rows to ``steered_url``, an engine started with the exported lever. The
    engine's vocabulary must be the model's (the same GGUF). Guided rows cannot run there."""

    plain_url: str
    steered_url: str | None = None
    timeout_seconds: float = 300.0
    name: str = "llama-cpp"
    _steered: list[tuple[Any, ...]] = field(default_factory=list)  # the one steered condition's interventions

    def unreachable(self) -> tuple[str, str] | None:
        """(which, why) for the first engine that is not an http(s) URL or does not answer ``/health``;
        None when both answer. Checked before a run loads any model."""
        import re

        import httpx

        for which, url in (("--engine-plain", self.plain_url), ("--engine-steered", self.steered_url)):
            if url is None:
                continue
            if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
                return which, f"{url[:60]!r} is not an http(s) URL, e.g. http://127.0.0.1:8080"
            try:
                status = httpx.get(url.rstrip("/") + "/health", timeout=5).status_code
            except httpx.HTTPError as exc:
                return which, f"no llama.cpp server answers at {url} ({type(exc).__name__})"
            if status != 200:
                return which, f"{url}/health answered {status}: start llama-server there, or wait until it is loaded"
        return None

    def generate(
        self, lm: LoadedModel, batches: Batches, max_new_tokens: int, temperature: float, on_batch: OnBatch
    ) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout_seconds) as client:
            for index, rows in batches:
                on_batch(index, [self._one(client, row, max_new_tokens, temperature) for row in rows])

    def _one(self, client: Any, row: GenerationRow, max_new_tokens: int, temperature: float) -> Generated:
        if row.guidance is not None:
            raise ValueError("a guided row cannot be generated by an engine: it needs per-row guidance")
        url = self.plain_url if not row.interventions else self.steered_url
        if url is None:
            raise ValueError("a steered row, and no engine started with the exported lever (--engine-steered)")
        if row.interventions:
            if not self._steered:
                self._steered.append(row.interventions)
            elif not all(a is b for a, b in zip(self._steered[0], row.interventions, strict=False)):
                raise ValueError("rows of two steered conditions: an engine serves one exported lever (one profile)")
        body: dict[str, Any] = {
            "prompt": list(row.prompt),
            "n_predict": max_new_tokens,
            "temperature": temperature,
            "return_tokens": True,
            "cache_prompt": True,
        }
        if row.seed is not None:
            body["seed"] = row.seed
        response = client.post(url.rstrip("/") + "/completion", json=body)
        response.raise_for_status()
        doc = response.json()
        return Generated([int(t) for t in doc["tokens"]], "length" if doc.get("stop_type") == "limit" else "stop")
