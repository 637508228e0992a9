"""What the server's routes share, and the config reload they trigger (SIGHUP or the admin endpoint)."""

from __future__ import annotations

import logging

from causalguard.config.loading import SourcedConfig, upstream_api_key
from causalguard.config.schema import GuardConfig
from causalguard.errors import CausalguardError
from causalguard.metrics import GuardMetrics
from causalguard.runtime.batcher import LoopHealth
from causalguard.runtime.value_guard import ValueGuard
from causalguard.server.admission import Admission
from causalguard.server.rate_limits import KeyRateLimits
from causalguard.server.upstream import Upstream

log = logging.getLogger(__name__)


class ServerState:
    """What the routes share: set once at start-up, then read; counters live in ``Admission``."""

    def __init__(self, source: SourcedConfig, metrics: GuardMetrics) -> None:
        self.source = source  # the start-up config; once the guard is loaded, its config is the one served
        self.metrics = metrics
        self.admission = Admission(source.config.server.max_concurrency, source.config.server.max_queue)
        metrics.track_admission(lambda: self.admission.running, lambda: self.admission.waiting)
        metrics.track_decode_loop(
            lambda: float(self.decode_loop_stuck()),
            lambda: health.stalled_seconds if (health := self.decode_loop()) else 0.0,
        )
        self.guard: ValueGuard | None = None
        # proxy mode: the upstream that generates (read at start-up; a reload does not switch it)
        spec = source.config.upstream
        self.upstream = Upstream(spec, api_key=upstream_api_key(source)) if spec is not None else None
        # upstreams started with a control vector (upstream.control_vectors), by API root
        self.engine_upstreams: dict[str, Upstream] = (
            {
                url: Upstream(spec.model_copy(update={"base_url": url}), api_key=upstream_api_key(source))
                for url in dict.fromkeys(spec.control_vectors.values())
            }
            if spec is not None
            else {}
        )
        if spec is not None:
            metrics.track_upstream(
                spec.model, lambda: float(self.upstream is not None and bool(self.upstream.health.up))
            )
        self.ready = False
        self.load_error: str | None = None
        self.rate_limits = KeyRateLimits()  # per client key id, for this server's lifetime

    @property
    def config(self) -> GuardConfig:
        return self.guard.config if self.guard is not None else self.source.config

    def hooks_installed(self) -> int:
        return self.guard.installed_hooks if self.guard is not None else 0

    def decode_loop(self) -> LoopHealth | None:
        """The shared decode loop's health (None without a guard or without batching)."""
        batcher = self.guard.batcher if self.guard is not None else None
        return batcher.health() if batcher is not None else None

    def upstreams(self) -> list[Upstream]:
        """Proxy mode: the main upstream and those started with a control vector."""
        return ([self.upstream] if self.upstream is not None else []) + list(self.engine_upstreams.values())

    def upstream_for(self, base_url: str | None) -> Upstream:
        """The upstream a request goes to (``base_url`` from ``engine_request``; None: the main one)."""
        assert self.upstream is not None
        return self.engine_upstreams.get(base_url, self.upstream) if base_url is not None else self.upstream

    def upstream_down(self) -> bool:
        """Proxy mode: an upstream has not been seen up (not probed yet, or its last verdict was down)."""
        return any(not upstream.health.up for upstream in self.upstreams())

    def busy(self) -> bool:
        """Whether background work (audits) should yield: a request is queued, or all slots are taken; in
        proxy mode any request in flight, since the upstream's capacity is the user's (a single-slot
        llama.cpp server answers one request at a time)."""
        admission = self.admission
        if self.upstream is not None:
            return admission.running > 0 or admission.waiting > 0
        return admission.waiting > 0 or admission.running >= admission.max_concurrency

    def decode_loop_stuck(self) -> bool:
        """The watchdog's verdict: the loop died, or has had work too long without a step."""
        health = self.decode_loop()
        return health is not None and health.stuck(self.config.server.decode_stall_seconds)


def reload_config(state: ServerState, raise_errors: bool = False) -> int:
    """Reload the guard's config from its file (SIGHUP or the admin endpoint)."""
    guard = state.guard
    if guard is None:
        return 0
    try:
        guard.reload()
    except CausalguardError as exc:  # an expected, explained error (bad file, infeasible plan): no traceback
        log.error("config reload refused; the old config stays active:\n%s", exc)
        if raise_errors:
            raise
        return guard.config_version
    log.info("config reloaded: profiles %s", ", ".join(guard.state.plans))
    log_plans(guard, "reload")
    return guard.config_version


def log_plans(guard: ValueGuard, when: str) -> None:
    """One log record per profile's plan (structured fields for JSON logs)."""
    for name, plan in guard.state.plans.items():
        log.info(
            "plan %s: %s",
            name,
            ", ".join(lever.id for lever in plan.levers) or "no levers",
            extra={
                "event": f"plan_{when}",
                "profile": name,
                "levers": [lever.id for lever in plan.levers],
                "units": plan.units,
                "proxy": guard.proxy,
            },
        )
