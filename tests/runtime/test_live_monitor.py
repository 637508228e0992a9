"""The live value monitor on fakes: sampling, the bounded queue, judge failures, windows and the drift alarm
against a reference profile, reloads, profiles kept apart, privacy of metrics and logs. (The real model,
server, Prometheus and llama.cpp runs live in test_live_monitor_real.py.)"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest

from causalguard.config.loading import load_guard_config
from causalguard.config.schema import GuardConfig, LimitsSpec, MonitorSpec, ProfileSpec, TargetSpec
from causalguard.errors import ConfigError
from causalguard.judging.reply_quality import QualityCalibration, text_quality
from causalguard.metrics import GuardMetrics
from causalguard.planning import plan_levers
from causalguard.runtime.monitor import LiveMonitor, ServedReply
from causalguard.runtime.monitor_window import LiveEstimate, ScoreWindow, change_vs_reference, drift_alarm
from causalguard.runtime.state import GuardState
from tests.guard_fakes import DIMS, fake_bundle, fake_bundle_v2

CALIBRATION = QualityCalibration(40, 0.8, 0.2, 3.0, 0.1, 0.0, 0.05, max_recited=1)
SECRET = "zebra-umbrella-7781"  # a string only the prompts and replies of these tests contain


class _Judge:
    """'power' is read from the reply: 'LOW' -0.3, 'HIGH' +0.3, else 0; other values a little noise."""

    dimensions = tuple(DIMS)

    def __init__(self) -> None:
        self.calls = 0
        self.fail = False

    def score(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.fail:
            raise RuntimeError("judge down")
        out = np.zeros((len(texts), len(DIMS)), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, DIMS.index("power")] = -0.3 if "LOW" in t else 0.3 if "HIGH" in t else 0.0
            out[i, DIMS.index("achievement")] = 0.01 * (len(t) % 5)
        return out


def _state(monitor: MonitorSpec | None = None, *, power_plan: str = "power-down") -> GuardState:
    """default: power down (a role lever whose forecast is about -0.3); plain: no levers."""
    spec = ProfileSpec(
        targets={"power": TargetSpec(direction="decrease" if power_plan == "power-down" else "increase")}
    )
    plans = {
        "default": plan_levers(spec, fake_bundle_v2(), LimitsSpec(max_levers=1), name="default"),
        "plain": plan_levers(ProfileSpec(), fake_bundle(), LimitsSpec(), name="plain"),
    }
    config = GuardConfig(profiles={"plain": ProfileSpec()}, monitor=monitor or MonitorSpec(sample_rate=1.0))
    return GuardState(config, plans, {name: () for name in plans})


class _Holder:
    def __init__(self, state: GuardState) -> None:
        self.state = state

    def __call__(self) -> GuardState:
        return self.state


def _monitor(monitor: MonitorSpec | None = None) -> tuple[LiveMonitor, _Holder, _Judge, GuardMetrics]:
    holder, judge, metrics = _Holder(_state(monitor)), _Judge(), GuardMetrics()
    return LiveMonitor(holder, judge, CALIBRATION, metrics), holder, judge, metrics


def _reply(holder: _Holder, profile: str, text: str) -> ServedReply:
    plan = holder.state.plans[profile]
    return ServedReply(
        profile,
        plan.key,
        f"What should I do about {SECRET}?",
        f"{text} {SECRET} is a fine idea to think about with care and patience today.",
        None,
    )


def _value(metrics: GuardMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_window_mean_is_a_t_interval_and_the_change_a_welch_interval() -> None:
    a, b = ScoreWindow("k", ["power"], 10), ScoreWindow("k", ["power"], 10)
    for x in (0.1, 0.3, 0.2, 0.4):
        a.add({"power": x}, False)
    for x in (0.0, 0.1, -0.1, 0.0):
        b.add({"power": x}, x < 0)
    m = a.window_mean("power")
    assert m.n == 4 and m.mean == pytest.approx(0.25) and m.low < 0.25 < m.high
    assert m.high - m.low == pytest.approx(2 * 3.182446 * math.sqrt(np.var([0.1, 0.3, 0.2, 0.4], ddof=1) / 4), 1e-4)
    d = change_vs_reference(a, b, "power")
    assert d.mean == pytest.approx(0.25) and d.low < 0.25 < d.high and b.degraded_rate() == 0.25
    with pytest.raises(ValueError, match="non-finite"):
        a.add({"power": float("nan")}, False)
    with pytest.raises(ValueError, match="missing power"):
        a.add({}, False)


def test_the_window_keeps_only_the_last_replies() -> None:
    w = ScoreWindow("k", ["power"], 3)
    for x in (9.0, 1.0, 2.0, 3.0):
        w.add({"power": x}, False)
    assert len(w) == 3 and w.window_mean("power").mean == pytest.approx(2.0)


def test_drift_alarm_needs_min_replies_and_an_interval_outside_the_forecast() -> None:
    far = LiveEstimate(40, 0.5, 0.4, 0.6)
    assert drift_alarm(far, -0.4, -0.2, min_replies=30)
    assert not drift_alarm(far, -0.4, -0.2, min_replies=41)
    assert not drift_alarm(LiveEstimate(40, -0.3, -0.35, -0.25), -0.4, -0.2, min_replies=30)
    assert not drift_alarm(LiveEstimate(40, 0.5, math.nan, math.nan), -0.4, -0.2, min_replies=30)


def test_replies_are_sampled_systematically_per_profile() -> None:
    monitor, holder, _, metrics = _monitor(MonitorSpec(sample_rate=0.25))
    taken = [monitor.observe(_reply(holder, "default", "LOW")) for _ in range(8)]
    assert taken == [True, False, False, False, True, False, False, False]
    assert monitor.observe(_reply(holder, "plain", "HIGH"))  # each profile has its own count
    assert _value(metrics, "causalguard_monitor_replies_total", profile="default", outcome="not_sampled") == 6
    none, _, _, _ = _monitor(MonitorSpec(sample_rate=0.0))
    assert not any(none.observe(_reply(holder, "default", "LOW")) for _ in range(5))


def test_a_full_queue_skips_and_counts_replies_without_waiting() -> None:
    monitor, holder, judge, metrics = _monitor(MonitorSpec(sample_rate=1.0, queue_size=2))
    started = time.perf_counter()
    taken = [monitor.observe(_reply(holder, "default", "LOW")) for _ in range(5)]  # no judging thread runs
    assert time.perf_counter() - started < 0.5
    assert taken == [True, True, False, False, False] and judge.calls == 0
    assert _value(metrics, "causalguard_monitor_replies_total", profile="default", outcome="skipped_queue_full") == 3
    assert _value(metrics, "causalguard_monitor_queue_depth") == 2
    monitor.start()
    try:
        assert monitor.drain(10)
    finally:
        monitor.stop()
    assert _value(metrics, "causalguard_monitor_replies_total", profile="default", outcome="judged") == 2
    assert _value(metrics, "causalguard_monitor_queue_depth") == 0


def test_judge_failures_are_counted_and_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    monitor, holder, judge, metrics = _monitor(MonitorSpec(sample_rate=1.0, log_interval_seconds=3600))
    judge.fail = True
    with caplog.at_level(logging.WARNING):
        monitor.judge_batch([_reply(holder, "default", "LOW"), _reply(holder, "plain", "HIGH")])
        monitor.judge_batch([_reply(holder, "default", "LOW")])
        assert monitor.judge_now(_reply(holder, "default", "LOW")) is None
    assert _value(metrics, "causalguard_monitor_replies_total", profile="default", outcome="failed") == 3
    assert _value(metrics, "causalguard_monitor_replies_total", profile="plain", outcome="failed") == 1
    warnings = [r for r in caplog.records if "live monitor" in r.getMessage()]
    assert len(warnings) == 1 and "RuntimeError" in warnings[0].getMessage()
    assert SECRET not in caplog.text
    judge.fail = False
    assert monitor.judge_now(_reply(holder, "default", "LOW")) is not None  # it recovers


def test_a_judge_returning_the_wrong_shape_fails_the_batch() -> None:
    monitor, holder, judge, metrics = _monitor()
    judge.score = lambda texts: np.zeros((len(texts), 1), dtype=np.float32)  # type: ignore[method-assign]
    monitor.judge_batch([_reply(holder, "default", "LOW")])
    assert _value(metrics, "causalguard_monitor_replies_total", profile="default", outcome="failed") == 1
    assert monitor.window("default") is None


def _feed(monitor: LiveMonitor, holder: _Holder, profile: str, text: str, n: int) -> None:
    monitor.judge_batch([_reply(holder, profile, f"{text} {'x' * i}") for i in range(n)])


def test_live_change_against_the_reference_trips_the_alarm_only_when_it_leaves_the_forecast() -> None:
    monitor, holder, _, metrics = _monitor(MonitorSpec(sample_rate=1.0, min_replies=10))
    forecast = holder.state.plans["default"].forecast_for("power")
    assert forecast.role == "target" and forecast.high < 0  # the plan promises power down
    _feed(monitor, holder, "plain", "neutral", 12)
    _feed(monitor, holder, "default", "LOW", 12)  # -0.3 vs the reference: what the plan forecasts
    labels = {"profile": "default", "value": "power"}
    change = monitor.change(holder.state, "default", "power")
    assert change is not None and change.mean == pytest.approx(-0.3, abs=1e-6)
    assert _value(metrics, "causalguard_monitor_value_change", **labels) == pytest.approx(-0.3, abs=1e-6)
    assert _value(metrics, "causalguard_monitor_drift_alarm", **labels) == 0
    assert _value(metrics, "causalguard_monitor_value_score_mean", **labels) == pytest.approx(-0.3, abs=1e-6)
    assert _value(metrics, "causalguard_monitor_window_replies", profile="default") == 12
    # users' own framing pushes the value the other way: the window moves past the forecast
    _feed(monitor, holder, "default", "HIGH", 12)
    assert _value(metrics, "causalguard_monitor_drift_alarm", **labels) == 1
    assert _value(metrics, "causalguard_monitor_drift_alarm", profile="default", value="benevolence") == 0
    assert _value(metrics, "causalguard_monitor_reply_value_score_count", **labels) == 24
    # the reference profile itself is never compared with itself
    assert _value(metrics, "causalguard_monitor_value_change", profile="plain", value="power") is None


def test_no_alarm_before_min_replies_or_without_reference_traffic() -> None:
    monitor, holder, _, metrics = _monitor(MonitorSpec(sample_rate=1.0, min_replies=10))
    _feed(monitor, holder, "default", "HIGH", 12)
    assert monitor.change(holder.state, "default", "power") is None
    assert _value(metrics, "causalguard_monitor_drift_alarm", profile="default", value="power") is None
    assert _value(metrics, "causalguard_monitor_value_score_mean", profile="default", value="power") == pytest.approx(
        0.3, abs=1e-6
    )
    _feed(monitor, holder, "plain", "neutral", 5)  # the reference has too few replies yet
    assert _value(metrics, "causalguard_monitor_drift_alarm", profile="default", value="power") == 0
    _feed(monitor, holder, "plain", "neutral", 5)
    assert _value(metrics, "causalguard_monitor_drift_alarm", profile="default", value="power") == 1


def test_a_reload_that_changes_the_plan_starts_a_new_window_and_drops_stale_replies() -> None:
    monitor, holder, _, metrics = _monitor()
    old = _reply(holder, "default", "LOW")
    _feed(monitor, holder, "default", "LOW", 5)
    first = monitor.window("default")
    assert first is not None and len(first) == 5
    holder.state = _state(power_plan="power-up")
    assert holder.state.plans["default"].key != old.plan_key
    monitor.judge_batch([old])  # generated under the old plan, judged after the reload
    assert _value(metrics, "causalguard_monitor_replies_total", profile="default", outcome="stale") == 1
    _feed(monitor, holder, "default", "HIGH", 2)
    window = monitor.window("default")
    assert window is not None and window is not first and len(window) == 2
    assert window.window_mean("power").mean == pytest.approx(0.3, abs=1e-6)


def test_profiles_never_share_a_window() -> None:
    monitor, holder, _, _ = _monitor()
    _feed(monitor, holder, "default", "LOW", 4)
    _feed(monitor, holder, "plain", "HIGH", 3)
    default, plain = monitor.window("default"), monitor.window("plain")
    assert default is not None and plain is not None
    assert len(default) == 4 and len(plain) == 3
    assert default.window_mean("power").mean == pytest.approx(-0.3, abs=1e-6)
    assert plain.window_mean("power").mean == pytest.approx(0.3, abs=1e-6)


def test_judge_now_returns_the_scores_and_counts_the_reply() -> None:
    monitor, holder, _, metrics = _monitor()
    judged = monitor.judge_now(_reply(holder, "default", "LOW"))
    assert judged is not None and judged.scores["power"] == pytest.approx(-0.3) and not judged.degraded
    assert _value(metrics, "causalguard_monitor_replies_total", profile="default", outcome="judged") == 1


def test_quality_flags_come_from_the_text_alone() -> None:
    monitor, holder, _, metrics = _monitor()
    reciting = ServedReply(
        "default",
        holder.state.plans["default"].key,
        "How do I save money?",
        "As someone who is inclined to benevolence and kindness, as someone who is inclined to "
        "benevolence, save money.",
        "Answer as someone who is inclined to benevolence and kindness.",
    )
    judged = monitor.judge_now(reciting)
    assert judged is not None and judged.degraded and "recites_instruction" in judged.quality_flags
    q = text_quality("hi", "A calm and varied answer with enough words in it.", None)
    assert math.isnan(q.perplexity) and math.isnan(q.relevance) and not CALIBRATION.flags(q)
    assert _value(metrics, "causalguard_monitor_degraded_reply_rate", profile="default") == 1.0


def test_metrics_never_carry_prompt_or_reply_text() -> None:
    monitor, holder, _, metrics = _monitor()
    _feed(monitor, holder, "plain", "neutral", 6)
    _feed(monitor, holder, "default", "LOW", 6)
    exposition = generate_latest(metrics.registry).decode()
    assert "causalguard_monitor_value_score_mean" in exposition and SECRET not in exposition


def test_an_unknown_reference_profile_is_an_error_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "guard.yaml"
    path.write_text("targets:\n  power: {direction: decrease}\nmonitor:\n  reference_profile: baseline\n")
    with pytest.raises(ConfigError) as info:
        load_guard_config(path, DIMS)
    problem = info.value.problems[0]
    assert problem.line == 4 and problem.field == "monitor.reference_profile" and "baseline" in problem.message
    path.write_text("targets:\n  power: {direction: decrease}\n")  # the default 'plain' may be absent
    assert load_guard_config(path, DIMS).monitor.reference_profile == "plain"
    path.write_text("monitor:\n  sample_rate: 1.5\n")
    with pytest.raises(ConfigError, match="sample_rate"):
        load_guard_config(path, DIMS)


def test_a_monitor_without_reference_plan_levers_is_not_a_reference() -> None:
    state = _state(MonitorSpec(reference_profile="default"))
    assert LiveMonitor.reference_profile(state) is None  # 'default' has levers: not an unguarded reference
    assert LiveMonitor.reference_profile(_state()) == "plain"
