"""Reply audits: what the guarded chatbot says, judged for every value and for quality, round after round.

Each round, per profile with levers: a sample of the audit prompts (the operator's prompt set, or
the shipped test prompts) is answered twice through the guard's own generation path, guarded (the
profile's role instructions and SAE edits) and unguarded (the operator's system prompt only),
greedy, so the pair differs only by the plan. The value judge scores both replies on every value;
reply quality flags both against the bundle's unsteered calibration. The pairs accumulate per plan
(``AuditAccumulator``; a reload that changes a plan starts a new one), and every round publishes the
running estimate with its interval, the power to detect the planned change, and the drift and
quality alarms (see ``audit_estimates``).

Audits never starve serving: a round is skipped (and counted) while requests are running or
queued (``busy``), and after a round of ``t`` seconds the next waits at least
``t * (1 / max_cpu_share - 1)`` seconds besides the interval. In proxy mode audits share the upstream
with users, so they use at most one upstream request at a time, only once the upstream has been seen up
(``ready``), and they yield before every upstream call while any user request is in flight or queued
(the round ends there, counted ``skipped_busy``): a user waits at most for one audit reply. Failures are
counted and logged as one line (at most once per profile per round interval, never a traceback), and
every round that failed in a row doubles the pause before the next (up to 16 times). ``stop`` ends a
round at the next generated token (or upstream call), so closing the guard does not wait for the round.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from causalguard.judging.judge import ValueJudge
from causalguard.judging.prompt_sets import Prompt, PromptSet
from causalguard.judging.reply_quality import QualityCalibration, reply_quality
from causalguard.metrics import GuardMetrics
from causalguard.models.loaded import LoadedModel
from causalguard.runtime.audit_estimates import AuditAccumulator
from causalguard.runtime.conversation import compose_messages
from causalguard.runtime.engine_levers import engine_request
from causalguard.runtime.generation import GenerationRow, cancel_criteria, chat_prompt_ids, generate_rows
from causalguard.runtime.periodic import PeriodicWorker
from causalguard.runtime.plan_conditions import plan_row
from causalguard.runtime.state import GuardState
from causalguard.runtime.upstream_replies import Complete

log = logging.getLogger(__name__)


class AuditStopped(Exception):
    """The auditor was stopped in the middle of a round: the round ends without a result."""


class AuditYielded(Exception):
    """Proxy mode: a user request needs the upstream; the round ends without a result."""


MAX_BACKOFF = 16


@dataclass(frozen=True)
class ReplyPair:
    prompt: Prompt
    guarded: str
    unguarded: str
    guarded_system: str | None
    unguarded_system: str | None


class ReplyAuditor(PeriodicWorker):
    """Background reply audits of every profile of the current configuration (``state()``, read each round)."""

    thread_name = "causalguard-reply-audit"

    def __init__(
        self,
        state: Callable[[], GuardState],
        lm: LoadedModel,
        judge: ValueJudge,
        calibration: QualityCalibration,
        prompts: PromptSet,
        metrics: GuardMetrics,
        *,
        busy: Callable[[], bool] = lambda: False,
        complete: Complete | None = None,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        super().__init__()
        if len(prompts) == 0:
            raise ValueError("reply audits need at least one prompt")
        self.state = state
        self.lm = lm
        self.judge = judge
        self.calibration = calibration
        self.prompts = list(prompts)
        self.metrics = metrics
        self.busy = busy
        self.complete = complete  # proxy mode: replies come from the upstream, as users get them
        self.ready = ready  # proxy mode: whether the upstream has been seen up
        self.accumulators: dict[str, AuditAccumulator] = {}
        self._round = 0
        self._last_seconds = 0.0
        self.failed_rounds = 0  # rounds in a row in which an audit failed (the backoff)
        self._last_logged: dict[str, float] = {}

    def pause_seconds(self) -> float:
        """The configured interval, stretched so rounds take at most ``audit.max_cpu_share`` of the time, and
        doubled for every round in a row that failed (up to ``MAX_BACKOFF`` times)."""
        audit = self.state().config.audit
        base = max(audit.interval_seconds, self._last_seconds * (1 / audit.max_cpu_share - 1))
        return base * min(2**self.failed_rounds, MAX_BACKOFF)

    def _log_failure(self, profile: str, exc: Exception) -> None:
        """One line per failure, at most once per profile per audit interval (never a traceback)."""
        now = time.monotonic()
        if now - self._last_logged.get(profile, -math.inf) < self.state().config.audit.interval_seconds:
            return
        self._last_logged[profile] = now
        detail = str(exc).splitlines()[0][:200] if str(exc) else ""
        log.warning(
            "reply audit of profile %s failed: %s: %s (round %d in a row with a failure; the pause "
            "before the next doubles)",
            profile,
            type(exc).__name__,
            detail,
            self.failed_rounds + 1,
        )

    # ---- one round ------------------------------------------------------------------------------
    def run_once(self) -> dict[str, AuditAccumulator]:
        """Audit every profile with levers once; busy servers and failures are counted, not raised."""
        state = self.state()
        self._round += 1
        started = time.perf_counter()
        failed = False
        for name, plan in state.plans.items():
            if not plan.levers:
                continue
            if self.stopping.is_set():
                break
            if self.complete is not None and not self.ready():
                self.metrics.audits.labels(profile=name, outcome="skipped_upstream_down").inc()
                continue
            if self.busy():
                self.metrics.audits.labels(profile=name, outcome="skipped_busy").inc()
                continue
            try:
                t0 = time.perf_counter()
                acc = self.audit(state, name, seed=self._round)
                targets = {v: self._logged(acc, v) for v in plan.goals}
                log.info(
                    "reply audit of profile %s: %s",
                    name,
                    targets,
                    extra={
                        "event": "audit",
                        "profile": name,
                        "pairs": acc.estimate(next(iter(plan.goals))).n if plan.goals else 0,
                        "targets": targets,
                        "quality_alarm": acc.quality_alarm(),
                    },
                )
                self.metrics.audits.labels(profile=name, outcome="ok").inc()
                self.metrics.audit_seconds.labels(profile=name).observe(time.perf_counter() - t0)
                self.metrics.audit_last_success.labels(profile=name).set(time.time())
            except AuditStopped:
                break
            except AuditYielded:
                self.metrics.audits.labels(profile=name, outcome="skipped_busy").inc()
                break
            except Exception as exc:  # counted and logged; an audit never raises into serving
                self._log_failure(name, exc)
                self.metrics.audits.labels(profile=name, outcome="error").inc()
                failed = True
        self.failed_rounds = min(self.failed_rounds + 1, 8) if failed else 0
        self._last_seconds = time.perf_counter() - started
        return dict(self.accumulators)

    @staticmethod
    def _logged(acc: AuditAccumulator, value: str) -> dict[str, float | None]:
        """A target's running estimate for the log: JSON-safe (no interval yet is null)."""
        e = acc.estimate(value)
        return {
            k: round(x, 4) if math.isfinite(x) else None
            for k, x in (("mean", e.mean), ("low", e.low), ("high", e.high))
        }

    def sample(self, state: GuardState, seed: int) -> list[Prompt]:
        k = min(state.config.audit.prompts_per_audit, len(self.prompts))
        return random.Random(seed).sample(self.prompts, k)

    def replies(self, state: GuardState, profile: str, prompts: Sequence[Prompt]) -> list[ReplyPair]:
        """Guarded and unguarded greedy replies to ``prompts``: in one batch through the guard's path, or in
        proxy mode from the upstream (the same composed messages it is served)."""
        plan = state.plan(profile)
        config = state.config
        instructions = plan.role_instructions()
        if self.complete is not None:
            limit = config.audit.max_new_tokens
            unguarded = replace(plan, levers=())
            texts = []
            for extra, arm in ((instructions, plan), ((), unguarded)):
                routed = engine_request(arm, config.upstream)  # the engine's own levers: on, then off
                for p in prompts:
                    if self.stopping.is_set():
                        raise AuditStopped
                    if self.busy():  # the upstream's capacity is the users': yield before every call
                        raise AuditYielded
                    messages = compose_messages(p.messages(), config.system_prompt, extra)
                    texts.append(self.complete(messages, limit, routed).strip())
        else:
            texts = self._local_replies(state, profile, prompts, instructions)
        if self.stopping.is_set():
            raise AuditStopped
        guarded_system = "\n\n".join(x for x in (config.system_prompt, *instructions) if x) or None
        n = len(prompts)
        return [
            ReplyPair(p, texts[i], texts[n + i], guarded_system, config.system_prompt) for i, p in enumerate(prompts)
        ]

    def _local_replies(
        self, state: GuardState, profile: str, prompts: Sequence[Prompt], instructions: Sequence[str]
    ) -> list[str]:
        config = state.config
        plan = state.plan(profile)
        rows = [
            plan_row(self.lm, p.messages(), config.system_prompt, plan, state.interventions[profile]) for p in prompts
        ]
        rows += [GenerationRow(chat_prompt_ids(self.lm, p.messages(), config.system_prompt, ())) for p in prompts]
        outs = generate_rows(
            self.lm, rows, max_new_tokens=config.audit.max_new_tokens, stopping_criteria=cancel_criteria(self.stopping)
        )
        return [self.lm.tokenizer.decode(o.tokens, skip_special_tokens=True).strip() for o in outs]

    def degraded(self, pairs: Sequence[ReplyPair]) -> tuple[list[bool], list[bool]]:
        """Quality flags of the guarded and the unguarded replies (each under its served context)."""
        messages = [p.prompt.text for p in pairs] * 2
        texts = [p.guarded for p in pairs] + [p.unguarded for p in pairs]
        systems = [p.guarded_system for p in pairs] + [p.unguarded_system for p in pairs]
        flags = [self.calibration.degraded(q) for q in reply_quality(self.lm, messages, texts, systems=systems)]
        return flags[: len(pairs)], flags[len(pairs) :]

    def audit(self, state: GuardState, profile: str, *, seed: int = 0) -> AuditAccumulator:
        plan = state.plan(profile)
        key = plan.key
        acc = self.accumulators.get(profile)
        if acc is None or acc.plan_key != key:
            acc = AuditAccumulator(key, min_pairs=state.config.audit.min_pairs)
        pairs = self.replies(state, profile, self.sample(state, seed))
        scores = self.judge.score([p.guarded for p in pairs] + [p.unguarded for p in pairs])
        n = len(pairs)
        dims = self.judge.dimensions
        diffs = {d: [float(scores[i, k] - scores[n + i, k]) for i in range(n)] for k, d in enumerate(dims)}
        guarded_bad, unguarded_bad = self.degraded(pairs)
        acc.add(diffs, guarded_bad, unguarded_bad)
        self.accumulators[profile] = acc
        self.publish(state, profile, acc)
        for k, d in enumerate(dims):  # this round's guarded replies, reply scale
            self.metrics.audited_score.labels(profile=profile, value=d).set(float(scores[:n, k].mean()))
        return acc

    def publish(self, state: GuardState, profile: str, acc: AuditAccumulator) -> None:
        """Set the audit gauges. Drift and power compare with the plan only when the plan is in reply
        units (``units: survey`` plans are audited on replies but not compared: other scales)."""
        plan = state.plan(profile)
        comparable = plan.units == "replies"
        m = self.metrics
        for value in acc.diffs:
            e = acc.estimate(value)
            forecast = plan.forecast_for(value)
            labels = {"profile": profile, "value": value}
            m.audited_change.labels(**labels).set(e.mean)
            m.audited_change_low.labels(**labels).set(e.low)
            m.audited_change_high.labels(**labels).set(e.high)
            if comparable:
                if value not in plan.goals:  # side effects only: a target's change is not drift
                    m.drift.labels(**labels).set(e.mean - forecast.change)
                m.audit_power.labels(**labels).set(acc.power(value, forecast.change))
            m.drift_alarm.labels(**labels).set(int(comparable and acc.drift_alarm(value, forecast.low, forecast.high)))
        m.audit_pairs.labels(profile=profile).set(len(next(iter(acc.diffs.values()), [])))
        quality = acc.quality()
        m.quality_alarm.labels(profile=profile).set(int(acc.quality_alarm()))
        if quality is not None:
            m.audit_degraded_rate.labels(profile=profile, arm="guarded").set(quality.rate)
            m.audit_degraded_rate.labels(profile=profile, arm="unguarded").set(quality.baseline_rate)
