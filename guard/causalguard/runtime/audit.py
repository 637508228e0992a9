"""Canary value audits: in the background, score a sample of inventory items through the guarded model.

Each audit, per profile: the same sampled items (balanced in polarity per value) are scored with the
statement method twice, unguarded and with the profile's levers. For each audited value it records
the guarded score, the change (guarded minus unguarded), and the side-effect drift (change minus
the plan's predicted change), and publishes them as metrics. Audits run on their own daemon thread;
one that fails or runs past its timeout is counted and skipped, never raised into serving.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from causalguard.bundle.format import Bundle
from causalguard.metrics import GuardMetrics
from causalguard.models.loaded import LoadedModel
from causalguard.roles.role import BASELINE
from causalguard.runtime.periodic import PeriodicWorker
from causalguard.runtime.state import GuardState, bundle_catalog
from causalguard.scoring.base import ItemAnswer
from causalguard.scoring.statement import StatementContrast
from causalguard.steering_conditions import NoSteering, SteeringCondition
from causalguard.values.inventory import Dimension, Inventory, Item

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditResult:
    profile: str
    finished_at: float
    seconds: float
    items: int
    scores: dict[str, float]
    changes: dict[str, float]
    predicted: dict[str, float]
    drift: dict[str, float]

    def exceeds_tolerance(self, tolerances: dict[str, float]) -> list[str]:
        return [v for v, t in tolerances.items() if v in self.changes and abs(self.changes[v]) > t]


class CanaryAuditor(PeriodicWorker):
    """Periodic audits for every profile of the current configuration (``state()``, read each round).

    ``condition(profile, state)`` gives a profile's levers as a survey condition on ``lm``."""

    thread_name = "causalguard-audit"

    def __init__(
        self,
        state: Callable[[], GuardState],
        lm: LoadedModel,
        bundle: Bundle,
        metrics: GuardMetrics,
        condition: Callable[[str, GuardState], SteeringCondition],
    ) -> None:
        super().__init__()
        self.state = state
        self.lm = lm
        self.bundle = bundle
        self.catalog = bundle_catalog(bundle)
        self.metrics = metrics
        self.condition = condition
        self.results: dict[str, AuditResult] = {}
        self._round = 0
        self._inventory: Inventory | None = None
        self._unguarded_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._unguarded: tuple[tuple[object, ...], list[ItemAnswer]] | None = None  # shared by a round's profiles

    def pause_seconds(self) -> float:
        return self.state().config.audit.interval_seconds

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the loop and wait for an audit still scoring (a survey audit ends within seconds)."""
        super().stop(timeout)
        worker = self._worker
        if worker is not None:
            worker.join(timeout)

    def run_once(self) -> dict[str, AuditResult]:
        """Audit every profile once (with the timeout); failures are counted and logged, not raised."""
        state = self.state()
        self._round += 1
        for profile in state.plans:
            done: dict[str, AuditResult] = {}
            worker = threading.Thread(
                target=self._audit_into,
                args=(state, profile, self._round, done),
                name="causalguard-audit-run",
                daemon=True,
            )
            started = time.perf_counter()
            self._worker = worker
            worker.start()
            deadline = time.monotonic() + state.config.audit.timeout_seconds
            while worker.is_alive() and time.monotonic() < deadline and not self.stopping.is_set():
                worker.join(0.1)
            seconds = time.perf_counter() - started
            metrics = self.metrics
            if self.stopping.is_set():
                break
            if worker.is_alive():
                metrics.audits.labels(profile=profile, outcome="timeout").inc()
                log.warning("audit of profile %s ran past %.0f s; skipped", profile, state.config.audit.timeout_seconds)
                continue
            if profile not in done:
                metrics.audits.labels(profile=profile, outcome="error").inc()
                continue
            metrics.audits.labels(profile=profile, outcome="ok").inc()
            metrics.audit_seconds.labels(profile=profile).observe(seconds)
            self._publish(done[profile])
        return dict(self.results)

    def _audit_into(self, state: GuardState, profile: str, round_: int, out: dict[str, AuditResult]) -> None:
        try:
            out[profile] = self.audit(state, profile, seed=round_)
        except Exception:
            log.exception("audit of profile %s failed", profile)

    def inventory(self) -> Inventory:
        """The bundle's inventory: its recorded name (a shipped inventory or a file path)."""
        if self._inventory is None:
            from causalguard.values.loading import DEFAULT_INVENTORY, load_inventory

            name = self.bundle.inventory_name or DEFAULT_INVENTORY
            self._inventory = load_inventory(name, dimensions=self.catalog.dimensions)
        return self._inventory

    def sample_items(self, state: GuardState, seed: int) -> list[tuple[Dimension, Item]]:
        """Items of the audited values, balanced: per value, half pro and half reversed."""
        inventory = self.inventory()
        wanted = state.config.audit.values or self.catalog.dimensions
        dims = [d for d in inventory.dimensions if d.name in wanted]
        per_value = max(2, state.config.audit.items_per_audit // max(1, len(dims)))
        rng = random.Random(seed)
        sample: list[tuple[Dimension, Item]] = []
        for dim in dims:
            for polarity in (1, -1):
                pool = [i for i in dim.items if i.polarity == polarity]
                sample += [(dim, i) for i in rng.sample(pool, min(len(pool), max(1, per_value // 2)))]
        return sample

    def audit(self, state: GuardState, profile: str, *, seed: int = 0) -> AuditResult:
        started = time.perf_counter()
        items = self.sample_items(state, seed)
        method = StatementContrast()
        lm = self.lm
        unguarded = self._unguarded_scores(items, seed)
        guarded = method.score(lm, BASELINE, self.condition(profile, state), items)
        plan = state.plan(profile)
        scores: dict[str, list[float]] = {}
        changes: dict[str, list[float]] = {}
        for before, after in zip(unguarded, guarded, strict=True):
            scores.setdefault(after.dimension, []).append(after.score)
            changes.setdefault(after.dimension, []).append(after.score - before.score)
        mean_scores = {v: sum(s) / len(s) for v, s in scores.items()}
        mean_changes = {v: sum(s) / len(s) for v, s in changes.items()}
        predicted = {v: plan.forecast_for(v).change for v in mean_changes}
        # side effects only: a target's miss is the audited change against the planned one, not drift
        drift = {v: mean_changes[v] - predicted[v] for v in mean_changes if v not in plan.goals}
        return AuditResult(
            profile, time.time(), time.perf_counter() - started, len(items), mean_scores, mean_changes, predicted, drift
        )

    def _unguarded_scores(self, items: list[tuple[Dimension, Item]], seed: int) -> list[ItemAnswer]:
        """The unguarded answers to this round's items: the same for every profile, so scored once."""
        key = (seed, *(item.id for _, item in items))
        with self._unguarded_lock:
            if self._unguarded is None or self._unguarded[0] != key:
                self._unguarded = (key, StatementContrast().score(self.lm, BASELINE, NoSteering(), items))
            return self._unguarded[1]

    def _publish(self, result: AuditResult) -> None:
        self.results[result.profile] = result
        m = self.metrics
        for value, score in result.scores.items():
            labels = {"profile": result.profile, "value": value}
            m.audited_score.labels(**labels).set(score)
            m.audited_change.labels(**labels).set(result.changes[value])
            if value in result.drift:
                m.drift.labels(**labels).set(result.drift[value])
        m.audit_last_success.labels(profile=result.profile).set(result.finished_at)
