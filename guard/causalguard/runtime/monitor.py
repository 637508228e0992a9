"""The live value monitor: served replies judged on every value and for quality, off the request path.

Every finished reply (in-process or from the upstream in proxy mode) is offered to ``observe``. A share
of each profile's replies (``monitor.sample_rate``, systematic: every 1/rate-th one) goes into a bounded
queue; a background thread takes batches of up to ``monitor.batch_size`` from it, scores them with the
bundle's value judge on every value, flags their quality against the unsteered calibration, and adds
them to the profile's sliding window (``monitor_window``). ``observe`` never blocks and never raises:
a full queue skips the reply, a failing judge fails the batch, and both are counted
(``causalguard_monitor_replies_total``). Streams stopped early are counted as ``cancelled``, not judged.

Each profile's window belongs to one plan (``Plan.key``): a reload that changes the plan starts a new
window, and replies generated under the old plan that are still queued are dropped as ``stale``.
Where the config has a lever-free reference profile (``monitor.reference_profile``, ``plain`` by
default) with live traffic, every other profile's window mean is compared with the reference's, and
the drift alarm fires when that change excludes the plan's forecast interval. Without reference traffic
the live means are exported alone and the reply audits' paired estimate is the attribution.

No prompt or reply text is logged or exported; labels are profile and value only.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from causalguard.judging.judge import ValueJudge
from causalguard.judging.reply_quality import QualityCalibration, reply_quality, text_quality
from causalguard.metrics import GuardMetrics, MonitorOutcome
from causalguard.models.loaded import LoadedModel
from causalguard.runtime.monitor_window import LiveEstimate, ScoreWindow, change_vs_reference, drift_alarm
from causalguard.runtime.state import GuardState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedReply:
    """A reply as a user got it. ``message`` and ``text`` are read for judging only, never logged."""

    profile: str
    plan_key: Hashable
    message: str  # the user's last message
    text: str
    system: str | None  # the served system prompt, role-lever wordings included


@dataclass(frozen=True)
class JudgedReply:
    scores: dict[str, float]
    degraded: bool
    quality_flags: tuple[str, ...]


class LiveMonitor:
    """Judges a sampled share of served replies in a background thread (``start``/``stop``).

    ``state()`` is read for every reply, so sample rate, window and reference follow reloads; the queue's
    size is fixed at construction. ``lm`` is needed only for ``monitor.quality: full``."""

    def __init__(
        self,
        state: Callable[[], GuardState],
        judge: ValueJudge,
        calibration: QualityCalibration,
        metrics: GuardMetrics,
        *,
        lm: LoadedModel | None = None,
    ) -> None:
        self.state = state
        self.judge = judge
        self.calibration = calibration
        self.metrics = metrics
        self.lm = lm
        self._queue: queue.Queue[ServedReply] = queue.Queue(maxsize=state().config.monitor.queue_size)
        self._lock = threading.Lock()
        self._windows: dict[str, ScoreWindow] = {}
        self._credit: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures_since_log = 0
        self._last_failure_log = -math.inf
        metrics.monitor_queue_depth.set_function(lambda: float(self._queue.qsize()))

    # ---- the request side: never blocks, never raises ----------------------------------------------
    def observe(self, reply: ServedReply) -> bool:
        """Offer a finished reply; True when it was queued for judging."""
        try:
            if not self._sampled(reply.profile, self.state().config.monitor.sample_rate):
                self._count(reply.profile, "not_sampled")
                return False
            self._queue.put_nowait(reply)
            return True
        except queue.Full:
            self._count(reply.profile, "skipped_queue_full")
        except Exception as exc:  # the monitor never breaks serving
            self._failed(reply.profile, exc, 1)
        return False

    def cancelled(self, profile: str) -> None:
        """A stream that ended before its reply was complete: counted, not judged."""
        self._count(profile, "cancelled")

    def judge_now(self, reply: ServedReply) -> JudgedReply | None:
        """Judge one reply on the caller's thread (``monitor.expose_scores``) and add it to the window;
        None when judging failed (counted and logged, never raised)."""
        try:
            (judged,) = self._judge([reply])
        except Exception as exc:
            self._failed(reply.profile, exc, 1)
            return None
        self._record(reply, judged)
        return judged

    def _sampled(self, profile: str, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            credit = self._credit.get(profile, 1.0 - rate) + rate  # the first reply is judged at any rate > 0
            taken = credit >= 1.0 - 1e-9
            self._credit[profile] = credit - 1.0 if taken else credit
        return taken

    # ---- the judging side ----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="causalguard-live-monitor", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """End the judging thread after its current batch (waits up to ``timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until every queued reply has been judged (or failed); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                batch = [self._queue.get(timeout=0.2)]
            except queue.Empty:
                continue
            size = max(1, self.state().config.monitor.batch_size)
            while len(batch) < size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self.judge_batch(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def judge_batch(self, batch: Sequence[ServedReply]) -> None:
        """Judge ``batch`` and add it to the windows; a failure fails the batch (counted), never raises."""
        started = time.perf_counter()
        try:
            judged = self._judge(batch)
        except Exception as exc:
            for profile in {r.profile for r in batch}:
                self._failed(profile, exc, sum(r.profile == profile for r in batch))
            return
        self.metrics.monitor_judge_seconds.observe(time.perf_counter() - started)
        for reply, one in zip(batch, judged, strict=True):
            self._record(reply, one)

    def _judge(self, batch: Sequence[ServedReply]) -> list[JudgedReply]:
        texts = [r.text for r in batch]
        scores = self.judge.score(texts)
        dims = self.judge.dimensions
        if scores.shape != (len(batch), len(dims)):
            raise ValueError(
                f"the judge returned scores of shape {tuple(scores.shape)} for {len(batch)} replies "
                f"and {len(dims)} values"
            )
        if self.state().config.monitor.quality == "full" and self.lm is not None:
            qualities = reply_quality(self.lm, [r.message for r in batch], texts, systems=[r.system for r in batch])
        else:
            qualities = [text_quality(r.message, r.text, r.system) for r in batch]
        out = []
        for i, q in enumerate(qualities):
            flags = tuple(self.calibration.flags(q))
            out.append(JudgedReply({d: float(scores[i, k]) for k, d in enumerate(dims)}, bool(flags), flags))
        return out

    # ---- windows and metrics ----------------------------------------------------------------------
    def _record(self, reply: ServedReply, judged: JudgedReply) -> None:
        state = self.state()
        plan = state.plans.get(reply.profile)
        if plan is None or plan.key != reply.plan_key:
            self._count(reply.profile, "stale")
            return
        bad = [d for d, x in judged.scores.items() if not math.isfinite(x)]
        if bad:
            self._failed(reply.profile, ValueError(f"non-finite judge scores for {', '.join(bad)}"), 1)
            return
        size = state.config.monitor.window
        with self._lock:
            window = self._windows.get(reply.profile)
            if window is None or window.plan_key != plan.key or window.degraded.maxlen != size:
                window = ScoreWindow(plan.key, self.judge.dimensions, size)
                self._windows[reply.profile] = window
            window.add(judged.scores, judged.degraded)
        for value, score in judged.scores.items():
            self.metrics.monitor_score.labels(profile=reply.profile, value=value).observe(score)
        self._count(reply.profile, "judged")
        reference = self.reference_profile(state)
        self.publish(state, *(state.plans if reply.profile == reference else (reply.profile,)))

    @staticmethod
    def reference_profile(state: GuardState) -> str | None:
        """The configured reference profile when the config has it and its plan applies no lever."""
        name = state.config.monitor.reference_profile
        plan = state.plans.get(name) if name is not None else None
        return name if plan is not None and not plan.levers else None

    def window(self, profile: str) -> ScoreWindow | None:
        """The profile's current window (None before its first judged reply under the current plan)."""
        with self._lock:
            return self._windows.get(profile)

    def change(self, state: GuardState, profile: str, value: str) -> LiveEstimate | None:
        """The profile's live change on ``value`` against the reference profile (None without one)."""
        reference = self.reference_profile(state)
        with self._lock:
            window, base = self._windows.get(profile), self._windows.get(reference) if reference else None
            if window is None or base is None or profile == reference:
                return None
            return change_vs_reference(window, base, value)

    def publish(self, state: GuardState, *profiles: str) -> None:
        """Set the live gauges of ``profiles`` from their windows."""
        m = self.metrics
        min_replies = state.config.monitor.min_replies
        for profile in profiles:
            plan = state.plans.get(profile)
            window = self.window(profile)
            if plan is None or window is None or window.plan_key != plan.key:
                continue
            m.monitor_window.labels(profile=profile).set(len(window))
            m.monitor_degraded_rate.labels(profile=profile).set(window.degraded_rate())
            watched = {f.value: f for f in plan.forecast if f.role in ("target", "protected")}
            for value in window.dimensions:
                labels = {"profile": profile, "value": value}
                mean = window.window_mean(value)
                m.monitor_mean.labels(**labels).set(mean.mean)
                m.monitor_mean_low.labels(**labels).set(mean.low)
                m.monitor_mean_high.labels(**labels).set(mean.high)
                change = self.change(state, profile, value)
                if change is None:
                    continue
                m.monitor_change.labels(**labels).set(change.mean)
                m.monitor_change_low.labels(**labels).set(change.low)
                m.monitor_change_high.labels(**labels).set(change.high)
                forecast = watched.get(value)
                alarm = (
                    forecast is not None
                    and plan.units == "replies"
                    and drift_alarm(change, forecast.low, forecast.high, min_replies=min_replies)
                )
                m.monitor_drift_alarm.labels(**labels).set(int(alarm))

    def _count(self, profile: str, outcome: MonitorOutcome) -> None:
        self.metrics.monitor_replies.labels(profile=profile, outcome=outcome).inc()

    def _failed(self, profile: str, exc: BaseException, n: int) -> None:
        self.metrics.monitor_replies.labels(profile=profile, outcome="failed").inc(n)
        self._failures_since_log += n
        now = time.monotonic()
        interval = self.state().config.monitor.log_interval_seconds
        if now - self._last_failure_log >= interval:
            log.warning(
                "live monitor: judging failed for %d replies since the last report (%s)",
                self._failures_since_log,
                type(exc).__name__,
                extra={"event": "monitor_failed", "profile": profile, "replies": self._failures_since_log},
            )
            self._last_failure_log, self._failures_since_log = now, 0
