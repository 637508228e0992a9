"""A Ray actor pool for the offline commands: join or start a cluster, keep every actor busy, stream results back.

The survey (``graphs/survey/ray_backend.py``) and reply runs (``graphs/behaviour/ray_replies.py``) hand
their independent pieces of work (a condition, a batch of replies) to actors that each load the model
once, and take the results back on the driver, which owns the checkpoint. A lost actor is Ray's to
handle: actors restart (``max_restarts``) and their unfinished work is retried (``max_task_retries``);
when those run out the run stops with ``WorkerLostError`` and what finished stays checkpointed. Ray is
an optional extra (``pip install 'causalguard[ray]'``) and is imported only when a pool runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from causalguard.errors import CausalguardError
from causalguard.models.loaded import LoadedModel

QUEUED_PER_ACTOR = 2  # one running, one waiting: an actor never idles between pieces of work


class RayNotInstalledError(CausalguardError):
    """The Ray backend was asked for without Ray installed."""


class WorkerLostError(CausalguardError):
    """An actor was lost more often than its restarts allow; finished work is in the checkpoint."""


@dataclass(frozen=True)
class RayOptions:
    """The actor pool. ``address`` None starts a local cluster with ``local_cpus`` CPUs (all when None)."""

    address: str | None = None
    actors: int = 2
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    threads: int | None = None  # torch threads per actor; default: the driver's (see torch_threads)
    max_restarts: int = 3
    local_cpus: int | None = None

    def __post_init__(self) -> None:
        if self.actors < 1:
            raise ValueError(f"actors must be at least 1, got {self.actors}")
        if self.num_cpus <= 0 or self.num_gpus < 0:
            raise ValueError(f"num_cpus must be > 0 and num_gpus >= 0, got {self.num_cpus}, {self.num_gpus}")
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {self.max_restarts}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")

    def torch_threads(self) -> int:
        """Torch threads per actor. By default the driver's own count: float reductions split over another
        number of threads round differently (about 1e-6 here), and a run is meant to give the local
        backend's results byte for byte. On one machine that oversubscribes its cores (actors x threads);
        set ``threads`` to the actor's CPUs where speed matters more than the last digits."""
        if self.threads is not None:
            return self.threads
        import torch

        return torch.get_num_threads()


def dtype_name(lm: LoadedModel) -> str:
    """The ``load_model`` dtype that gives ``lm``'s weights."""
    return str(getattr(lm.model, "dtype", "torch.float32")).removeprefix("torch.")


def load_checked_model(model: str, dtype: str, fingerprint: str, threads: int) -> LoadedModel:
    """In an actor: set its torch threads and load the driver's model, refusing other weights."""
    import torch

    from causalguard.models.loading import load_model

    torch.set_num_threads(threads)
    lm = load_model(model, dtype=dtype)
    if lm.fingerprint != fingerprint:
        raise CausalguardError(
            f"the worker loaded {model} with weights {lm.fingerprint[:12]}, the driver "
            f"{fingerprint[:12]}: install the same model on every node"
        )
    return lm


def worker_name() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayNotInstalledError("the Ray backend needs Ray: pip install 'causalguard[ray]'") from None
    return ray


@contextmanager
def ray_session(options: RayOptions) -> Iterator[Any]:
    """The ``ray`` module with a cluster connected: the running one, or one started (and shut down) here."""
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=options.address,
            num_cpus=options.local_cpus if options.address is None else None,
            include_dashboard=False,
            configure_logging=False,
            log_to_driver=False,
        )
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


class ActorPool:
    """``options.actors`` actors of ``worker`` (a plain class, wrapped with ``ray.remote`` here) doing ``work``.

    ``run(work, call, on_result)``: ``call(actor, index, piece)`` submits one piece and returns its object
    ref; ``on_result(result)`` runs on the driver as each finishes, in the order they finish. The actor
    handles are in ``actors`` while the pool runs (tests kill one)."""

    def __init__(self, ray: Any, worker: type, init_args: tuple[Any, ...], options: RayOptions) -> None:
        self.ray, self.worker, self.init_args, self.options = ray, worker, init_args, options
        self.actors: list[Any] = []

    def run(self, work: Sequence[Any], call: Callable[[Any, int, Any], Any], on_result: Callable[[Any], None]) -> None:
        ray, options = self.ray, self.options
        actor_class = ray.remote(self.worker).options(
            num_cpus=options.num_cpus,
            num_gpus=options.num_gpus,
            max_restarts=options.max_restarts,
            max_task_retries=options.max_restarts,
        )
        self.actors = [actor_class.remote(*self.init_args) for _ in range(min(options.actors, len(work)))]
        try:
            waiting = list(reversed(range(len(work))))  # pop() hands them out in order
            running: dict[Any, int] = {}  # object ref -> actor slot

            def hand_out(slot: int) -> None:
                if waiting:
                    index = waiting.pop()
                    running[call(self.actors[slot], index, work[index])] = slot

            for slot in range(len(self.actors)):
                for _ in range(QUEUED_PER_ACTOR):
                    hand_out(slot)
            while running:
                ready, _ = ray.wait(list(running), num_returns=1)
                slot = running.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except ray.exceptions.RayActorError as exc:
                    raise WorkerLostError(
                        f"an actor was lost more than {options.max_restarts} times ({exc.__class__.__name__}); the "
                        "finished work is in the checkpoint: run the same command again to resume"
                    ) from None
                on_result(result)
                hand_out(slot)
        finally:
            for actor in self.actors:
                ray.kill(actor)
            self.actors = []
