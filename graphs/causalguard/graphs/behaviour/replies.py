"""Replies to a prompt set under steering conditions, generated the way the guard serves them.

Every reply goes through ``causalguard.runtime.generation`` (the code path of ``ValueGuard``): the
chat template, the persona as the operator's system prompt, role-lever instructions composed into the
system message, SAE interventions through the dispatcher hooks on prompt and generated tokens, and
per-row seeds. Rows of different conditions share a batch (per-row steering plans).

A run is checkpointed in ``replies.jsonl``: one JSON object per reply, appended a batch at a time
(flushed and fsynced). A line cut short by a kill fails to parse and is dropped on resume, and its
reply is generated again; ``run.json`` records the settings, and a folder holding a run with other
settings is refused (``restart=True`` discards it).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from causalguard.adapters.hf.interventions import Intervention
from causalguard.adapters.hf.value_adapters import install_intervention_hooks
from causalguard.errors import CausalguardError
from causalguard.graphs.behaviour.reply_backends import LocalReplies, ReplyBackend
from causalguard.judging.prompt_sets import Prompt
from causalguard.models.loaded import LoadedModel
from causalguard.runtime.generation import Generated, GenerationRow, chat_prompt_ids
from causalguard.runtime.guidance import Guidance

REPLIES_FILE = "replies.jsonl"
RUN_FILE = "run.json"


@dataclass(frozen=True)
class Persona:
    """Who the chatbot is told it is: the operator's system prompt for these replies."""

    id: str
    system_prompt: str | None


@dataclass(frozen=True)
class ReplyCondition:
    """A steering condition for replies: role instructions, interventions (SAE edits, steering vectors)
    and, for guided levers, a guidance scale with the twin's instructions (``none``: nothing)."""

    id: str
    instructions: tuple[str, ...] = ()
    interventions: tuple[Intervention, ...] = ()
    guidance_scale: float | None = None
    negative_instructions: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReplySettings:
    max_new_tokens: int = 64
    temperature: float = 0.0
    seed: int = 0

    def row_seed(self, condition: str, persona: str, prompt: str) -> int:
        key = f"{self.seed}|{condition}|{persona}|{prompt}".encode()
        return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1


@dataclass(frozen=True)
class Reply:
    condition: str
    persona: str
    prompt: str
    text: str
    tokens: int
    finish: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.condition, self.persona, self.prompt)


class RunMismatchError(CausalguardError):
    pass


class ReplyStore:
    """Append-only reply storage with exact resume (see the module docstring)."""

    def __init__(self, folder: Path, identity: dict[str, Any], *, restart: bool = False) -> None:
        self.folder = folder
        self.path = folder / REPLIES_FILE
        folder.mkdir(parents=True, exist_ok=True)
        run = folder / RUN_FILE
        if restart:
            self.path.unlink(missing_ok=True)
            run.unlink(missing_ok=True)
        if run.exists():
            try:
                old = json.loads(run.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise RunMismatchError(f"{run}: unreadable run record ({exc}); rerun with --restart") from None
            if old != identity:
                changed = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
                raise RunMismatchError(
                    f"{folder} holds a reply run with other settings ({', '.join(changed)}); "
                    "use another folder or --restart"
                )
        else:
            tmp = run.with_suffix(".tmp")
            tmp.write_text(json.dumps(identity, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, run)

    def load(self) -> dict[tuple[str, str, str], Reply]:
        """Every complete reply on disk; rewrites the file without cut or invalid lines."""
        if not self.path.exists():
            return {}
        done: dict[tuple[str, str, str], Reply] = {}
        bad = 0
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
                reply = Reply(
                    str(record["condition"]),
                    str(record["persona"]),
                    str(record["prompt"]),
                    str(record["text"]),
                    int(record["tokens"]),
                    str(record["finish"]),
                )
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                bad += 1
                continue
            done[reply.key] = reply
        if bad:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(
                "".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in done.values()), encoding="utf-8"
            )
            os.replace(tmp, self.path)
        return done

    def append(self, replies: Sequence[Reply]) -> None:
        text = "".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in replies)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def run_replies(
    lm: LoadedModel,
    conditions: Sequence[ReplyCondition],
    personas: Sequence[Persona],
    prompts: Sequence[Prompt],
    settings: ReplySettings,
    store: ReplyStore,
    *,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
    backend: ReplyBackend | None = None,
) -> dict[tuple[str, str, str], Reply]:
    """Generate every condition x persona x prompt reply not yet in ``store``; returns all of them.

    ``batch_size`` is part of the run's layout: resume with the same value. ``backend`` generates the
    batches (default: in this process, where SAE interventions need dispatcher hooks on their layers,
    ``install_steering_hooks``; ``RayReplies`` on Ray actors)."""
    done = store.load()
    everything = [(c, p, q) for c in conditions for p in personas for q in prompts]
    encoded = {
        (c.id, p.id, q.id): chat_prompt_ids(lm, q.messages(), p.system_prompt, c.instructions) for c, p, q in everything
    }
    # A fixed batch layout over the whole run (similar lengths together), so that a resumed run puts
    # every reply in the same batch as an uninterrupted one and greedy outputs match exactly.
    everything.sort(key=lambda cpq: (len(encoded[(cpq[0].id, cpq[1].id, cpq[2].id)]), cpq[0].id, cpq[1].id, cpq[2].id))
    chunks = [everything[i : i + batch_size] for i in range(0, len(everything), batch_size)]

    def row(c: ReplyCondition, p: Persona, q: Prompt) -> GenerationRow:
        guidance = None
        if c.guidance_scale is not None:
            negative = chat_prompt_ids(lm, q.messages(), p.system_prompt, c.negative_instructions)
            guidance = Guidance(c.guidance_scale, tuple(negative))
        return GenerationRow(
            encoded[(c.id, p.id, q.id)], c.interventions, settings.row_seed(c.id, p.id, q.id), guidance
        )

    todo = [
        (index, [row(c, p, q) for c, p, q in chunk])
        for index, chunk in enumerate(chunks)
        if not all((c.id, p.id, q.id) in done for c, p, q in chunk)
    ]
    total = len(everything)
    finished = sum(1 for k in encoded if k in done)

    def on_batch(index: int, outs: list[Generated]) -> None:
        nonlocal finished
        batch = [
            Reply(
                c.id,
                p.id,
                q.id,
                lm.tokenizer.decode(o.tokens, skip_special_tokens=True).strip(),
                len(o.tokens),
                o.finish_reason,
            )
            for (c, p, q), o in zip(chunks[index], outs, strict=True)
        ]
        new = [r for r in batch if r.key not in done]
        store.append(new)
        for reply in new:
            done[reply.key] = reply
        finished += len(new)
        if progress is not None:
            progress(finished, total)

    (backend or LocalReplies()).generate(lm, todo, settings.max_new_tokens, settings.temperature, on_batch)
    return {k: done[k] for k in encoded}


def logged_progress(log: Callable[[str], None]) -> Callable[[int, int], None]:
    """A ``run_replies`` progress callback that logs replies done, the rate since now and the time left."""
    started = time.time()

    def progress(done: int, total: int) -> None:
        rate = done / max(time.time() - started, 1e-9)
        log(f"  {done}/{total} replies, {rate:.2f}/s, ETA {(total - done) / max(rate, 1e-9) / 60:.1f} min")

    return progress


def run_steered_replies(
    lm: LoadedModel,
    conditions: Sequence[ReplyCondition],
    personas: Sequence[Persona],
    prompts: Sequence[Prompt],
    settings: ReplySettings,
    store: ReplyStore,
    *,
    batch_size: int,
    log: Callable[[str], None],
    backend: ReplyBackend | None = None,
) -> dict[tuple[str, str, str], Reply]:
    """``run_replies`` with the steering hooks its conditions' interventions need installed for the run
    (removed after it, however it ends) and progress logged through ``log``."""
    with install_intervention_hooks(lm.model, [i for c in conditions for i in c.interventions]):
        return run_replies(
            lm,
            conditions,
            personas,
            prompts,
            settings,
            store,
            batch_size=batch_size,
            progress=logged_progress(log),
            backend=backend,
        )
