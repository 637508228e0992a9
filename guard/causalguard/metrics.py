"""Every Prometheus metric causalguard exports, declared in one place on an injectable registry.

Labels are bounded: ``profile`` (names in the operator config), ``value`` (the inventory's values),
``method``/``kind`` (role, sae, guided, vector, pair, adapter, none), ``outcome`` (a fixed set). Never per-request ids,
prompts or replies.
Expose with ``start_metrics_server`` (standalone port) or ``metrics_asgi_app`` (mount in an app).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
AUDIT_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
SCORE_BUCKETS = (-1.5, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5)  # reply judge scale
JUDGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
MonitorOutcome = Literal["judged", "not_sampled", "skipped_queue_full", "failed", "cancelled", "stale"]
MONITOR_OUTCOMES: tuple[str, ...] = get_args(MonitorOutcome)
RequestOutcome = Literal["ok", "error", "cancelled", "rejected", "timeout", "invalid", "rate_limited"]
REQUEST_OUTCOMES: tuple[str, ...] = get_args(RequestOutcome)


# Units of the value gauges that follow a profile's plan: the plan's units, which
# causalguard_profile_units names per profile.
PLAN_UNITS = (
    " Units: the profile's plan units (causalguard_profile_units): replies = reply-judge scale (+1 a typical "
    "reply that holds the value, -1 one that rejects it), survey = nats per token."
)


class GuardMetrics:
    """The guard's metrics on ``registry`` (a fresh ``CollectorRegistry`` unless one is given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "causalguard_requests_total",
            "Requests by profile, method and outcome (ok, error, cancelled, timeout; rejected = "
            "429 queue full; rate_limited = 429 over its client key's rate limit, profile 'none'; invalid = a "
            "4xx for bad input or a refused key, profile 'none' when it named none of the config's).",
            ["profile", "method", "outcome"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "causalguard_request_duration_seconds",
            "End-to-end request latency.",
            ["profile", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft_seconds = Histogram(
            "causalguard_time_to_first_token_seconds",
            "Time to the first streamed token.",
            ["profile", "method"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.generated_tokens = Counter(
            "causalguard_generated_tokens_total", "Tokens generated.", ["profile", "method"], registry=r
        )
        self.levers_applied = Counter(
            "causalguard_levers_applied_total", "Levers applied to requests, by kind.", ["profile", "kind"], registry=r
        )
        self.planned_change = Gauge(
            "causalguard_planned_value_change",
            "Target change the plan aims for." + PLAN_UNITS,
            ["profile", "value"],
            registry=r,
        )
        self.profile_units = Gauge(
            "causalguard_profile_units",
            "1 for the units a profile's plan, forecasts and value gauges are in (replies or survey).",
            ["profile", "units"],
            registry=r,
        )
        self.predicted_change = Gauge(
            "causalguard_predicted_value_change",
            "Change the plan predicts (measured lever effects)." + PLAN_UNITS,
            ["profile", "value"],
            registry=r,
        )
        self.tolerance = Gauge(
            "causalguard_value_tolerance",
            "Operator tolerance of a protected value." + PLAN_UNITS,
            ["profile", "value"],
            registry=r,
        )
        self.audited_score = Gauge(
            "causalguard_audited_value_score",
            "Value score measured by the last audit (reply audits: reply-judge scale, +1 a typical reply that "
            "holds the value; survey audits: nats per token).",
            ["profile", "value"],
            registry=r,
        )
        self.audited_change = Gauge(
            "causalguard_audited_value_change",
            "Guarded minus unguarded score: the last survey audit, or the running mean of "
            "all reply-audit pairs of the current plan (reply audits: reply-judge scale; survey audits: nats "
            "per token).",
            ["profile", "value"],
            registry=r,
        )
        self.audited_change_low = Gauge(
            "causalguard_audited_value_change_ci_low",
            "Reply audits: lower end of the running 95% interval of the change (reply-judge scale).",
            ["profile", "value"],
            registry=r,
        )
        self.audited_change_high = Gauge(
            "causalguard_audited_value_change_ci_high",
            "Reply audits: upper end of the running 95% interval of the change (reply-judge scale).",
            ["profile", "value"],
            registry=r,
        )
        self.audit_power = Gauge(
            "causalguard_audit_power",
            "Reply audits: power to detect the planned change with the pairs so far (two-sided 5% test).",
            ["profile", "value"],
            registry=r,
        )
        self.drift_alarm = Gauge(
            "causalguard_audit_drift_alarm",
            "1 when the audited interval excludes the plan's "
            "forecast interval (reply audits, after audit.min_pairs pairs).",
            ["profile", "value"],
            registry=r,
        )
        self.quality_alarm = Gauge(
            "causalguard_audit_quality_alarm",
            "1 when guarded replies are degraded more often than unguarded ones (one-sided Fisher, p < 0.05).",
            ["profile"],
            registry=r,
        )
        self.audit_degraded_rate = Gauge(
            "causalguard_audit_degraded_reply_rate",
            "Share of audited replies outside the unsteered quality range.",
            ["profile", "arm"],
            registry=r,
        )
        self.audit_pairs = Gauge(
            "causalguard_audit_pairs", "Reply pairs accumulated for the current plan.", ["profile"], registry=r
        )
        self.drift = Gauge(
            "causalguard_side_effect_drift",
            "Audited minus predicted change of a value the plan does not target (side effects only; a target's "
            "change is causalguard_audited_value_change against causalguard_planned_value_change)." + PLAN_UNITS,
            ["profile", "value"],
            registry=r,
        )
        self.audit_seconds = Histogram(
            "causalguard_audit_duration_seconds",
            "Canary audit duration.",
            ["profile"],
            buckets=AUDIT_BUCKETS,
            registry=r,
        )
        self.audits = Counter(
            "causalguard_audits_total",
            "Canary audits by outcome: ok, error, skipped_busy (users "
            "were being served; in proxy mode also a round that yielded the upstream to a user), "
            "skipped_upstream_down (proxy mode).",
            ["profile", "outcome"],
            registry=r,
        )
        self.audit_last_success = Gauge(
            "causalguard_audit_last_success_timestamp_seconds",
            "Unix time of the last successful audit.",
            ["profile"],
            registry=r,
        )
        self.config_reloads = Counter(
            "causalguard_config_reloads_total", "Configuration reloads by outcome.", ["outcome"], registry=r
        )
        self.in_flight = Gauge("causalguard_requests_in_flight", "Requests being generated now.", registry=r)
        self.queue_depth = Gauge("causalguard_queue_depth", "Requests waiting for a generation slot.", registry=r)
        self.decode_loop_stuck = Gauge(
            "causalguard_decode_loop_stuck",
            "1 when the shared decode loop has died or has had work for server.decode_stall_seconds without a step.",
            registry=r,
        )
        self.decode_loop_stalled_seconds = Gauge(
            "causalguard_decode_loop_stalled_seconds",
            "How long the decode loop has had work without finishing a step (0 when idle).",
            registry=r,
        )
        self.upstream_up = Gauge(
            "causalguard_upstream_up",
            "Proxy mode: 1 while the upstream answers (its /models "
            "probe or the last proxied request), 0 while it is down.",
            ["model"],
            registry=r,
        )
        # the live monitor: served replies judged (reply judge scale: +1 a typical reply holding the value)
        self.monitor_replies = Counter(
            "causalguard_monitor_replies_total",
            "Served replies by what the live "
            "monitor did with them: judged, not_sampled, skipped_queue_full, failed, "
            "cancelled (streams stopped early), stale (the plan changed before judging).",
            ["profile", "outcome"],
            registry=r,
        )
        self.monitor_score = Histogram(
            "causalguard_monitor_reply_value_score",
            "Live monitor: value score of each "
            "judged reply (reply judge scale, +1 = a typical reply holding the value).",
            ["profile", "value"],
            buckets=SCORE_BUCKETS,
            registry=r,
        )
        self.monitor_mean = Gauge(
            "causalguard_monitor_value_score_mean",
            "Live monitor: mean value score over the profile's sliding window (reply judge scale).",
            ["profile", "value"],
            registry=r,
        )
        self.monitor_mean_low = Gauge(
            "causalguard_monitor_value_score_ci_low",
            "Live monitor: lower end of the 95% interval of the window mean (reply judge scale).",
            ["profile", "value"],
            registry=r,
        )
        self.monitor_mean_high = Gauge(
            "causalguard_monitor_value_score_ci_high",
            "Live monitor: upper end of the 95% interval of the window mean (reply judge scale).",
            ["profile", "value"],
            registry=r,
        )
        self.monitor_change = Gauge(
            "causalguard_monitor_value_change",
            "Live monitor: window mean minus the "
            "reference profile's window mean (reply judge scale; needs monitor."
            "reference_profile traffic).",
            ["profile", "value"],
            registry=r,
        )
        self.monitor_change_low = Gauge(
            "causalguard_monitor_value_change_ci_low",
            "Live monitor: lower end of the 95% (Welch) interval of the change vs the reference.",
            ["profile", "value"],
            registry=r,
        )
        self.monitor_change_high = Gauge(
            "causalguard_monitor_value_change_ci_high",
            "Live monitor: upper end of the 95% (Welch) interval of the change vs the reference.",
            ["profile", "value"],
            registry=r,
        )
        self.monitor_drift_alarm = Gauge(
            "causalguard_monitor_drift_alarm",
            "1 when the live change of a target or "
            "protected value vs the reference excludes the plan's forecast interval "
            "(after monitor.min_replies replies on both sides).",
            ["profile", "value"],
            registry=r,
        )
        self.monitor_degraded_rate = Gauge(
            "causalguard_monitor_degraded_reply_rate",
            "Live monitor: share of the window's replies outside the unsteered quality range.",
            ["profile"],
            registry=r,
        )
        self.monitor_window = Gauge(
            "causalguard_monitor_window_replies",
            "Live monitor: judged replies in the profile's window (current plan).",
            ["profile"],
            registry=r,
        )
        self.monitor_queue_depth = Gauge(
            "causalguard_monitor_queue_depth", "Live monitor: replies waiting for the judge.", registry=r
        )
        self.monitor_judge_seconds = Histogram(
            "causalguard_monitor_judge_batch_seconds",
            "Live monitor: time to judge one batch of replies.",
            buckets=JUDGE_BUCKETS,
            registry=r,
        )
        self.bundle = Info("causalguard_bundle", "The loaded bundle: model, fingerprint, schema.", registry=r)

    def count_request(
        self, profile: str, method: str, outcome: RequestOutcome, seconds: float, lever_kinds: Any = ()
    ) -> None:
        """One finished request: its outcome, latency and the levers it used."""
        if outcome not in REQUEST_OUTCOMES:
            raise ValueError(f"unknown request outcome {outcome!r}; one of {', '.join(REQUEST_OUTCOMES)}")
        self.requests.labels(profile=profile, method=method, outcome=outcome).inc()
        self.request_seconds.labels(profile=profile, method=method).observe(seconds)
        for kind in lever_kinds:
            self.levers_applied.labels(profile=profile, kind=kind).inc()

    def count_rejected(self, profile: str) -> None:
        self.requests.labels(profile=profile, method="none", outcome="rejected").inc()

    def count_rate_limited(self) -> None:
        """A request refused with a 429 because its client key is over its rate limit."""
        self.requests.labels(profile="none", method="none", outcome="rate_limited").inc()

    def count_invalid(self, profile: str) -> None:
        """A request answered with a 4xx for bad input (``profile``: a configured one, or 'none')."""
        self.requests.labels(profile=profile, method="none", outcome="invalid").inc()

    def track_admission(self, running: Callable[[], float], waiting: Callable[[], float]) -> None:
        """Drive the in-flight and queue gauges from the admission state, read at scrape time."""
        self.in_flight.set_function(running)
        self.queue_depth.set_function(waiting)

    def track_decode_loop(self, stuck: Callable[[], float], stalled_seconds: Callable[[], float]) -> None:
        """Drive the decode-loop watchdog gauges, read at scrape time."""
        self.decode_loop_stuck.set_function(stuck)
        self.decode_loop_stalled_seconds.set_function(stalled_seconds)

    def track_upstream(self, model: str, up: Callable[[], float]) -> None:
        """Drive the proxy-mode upstream gauge, read at scrape time."""
        self.upstream_up.labels(model=model).set_function(up)

    def publish_plan(self, plan: Any) -> None:
        """Set planned/predicted/tolerance gauges from a ``Plan``, and the profile's units."""
        for units in ("replies", "survey"):
            self.profile_units.labels(profile=plan.profile, units=units).set(int(plan.units == units))
        for forecast in plan.forecast:
            labels = {"profile": plan.profile, "value": forecast.value}
            self.predicted_change.labels(**labels).set(forecast.change)
            goal = plan.goals.get(forecast.value)
            if goal is not None:
                self.planned_change.labels(**labels).set(forecast.change if abs(goal) == float("inf") else goal)
            if forecast.tolerance is not None:
                self.tolerance.labels(**labels).set(forecast.tolerance)


def start_metrics_server(metrics: GuardMetrics, port: int, host: str = "127.0.0.1") -> Any:
    """Serve ``/metrics`` on its own port (a daemon thread); returns prometheus-client's server."""
    from prometheus_client import start_http_server

    return start_http_server(port, addr=host, registry=metrics.registry)


def metrics_asgi_app(metrics: GuardMetrics) -> Any:
    """An ASGI app serving the metrics, to mount in FastAPI/Starlette (``app.mount('/metrics', ...)``)."""
    from prometheus_client import make_asgi_app

    return make_asgi_app(registry=metrics.registry)
