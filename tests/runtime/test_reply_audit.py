"""Reply audits on fakes: accumulation across rounds, intervals, power, the drift and quality alarms,
busy servers, plan changes. (One real-model round lives in test_guard_real.py.)"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from causalguard.config.schema import AuditSpec, GuardConfig, LimitsSpec, ProfileSpec, TargetSpec
from causalguard.judging.prompt_sets import load_prompts
from causalguard.judging.reply_quality import QualityCalibration
from causalguard.metrics import GuardMetrics
from causalguard.planning import Plan, plan_levers
from causalguard.runtime.audit_estimates import AuditAccumulator, estimate, power_to_detect
from causalguard.runtime.reply_audit import ReplyAuditor, ReplyPair
from tests.guard_fakes import DIMS, fake_bundle, fake_bundle_v2

CALIBRATION = QualityCalibration(40, 0.8, 0.2, 3.0, 0.1, 0.0, 0.05)


def test_running_estimate_is_a_t_interval() -> None:
    e = estimate([0.1, 0.3, 0.2, 0.4])
    assert e.mean == pytest.approx(0.25) and e.n == 4
    half = 3.182446 * np.std([0.1, 0.3, 0.2, 0.4], ddof=1) / 2
    assert e.low == pytest.approx(0.25 - half, rel=1e-5) and e.high == pytest.approx(0.25 + half, rel=1e-5)
    assert estimate([]).n == 0 and math.isnan(estimate([]).mean)
    assert estimate([0.2]).low == -math.inf


def test_power_grows_with_pairs_and_effect() -> None:
    assert power_to_detect(0.1, 0.2, 4) < power_to_detect(0.1, 0.2, 40) < power_to_detect(0.1, 0.2, 400)
    assert power_to_detect(0.05, 0.2, 40) < power_to_detect(0.2, 0.2, 40)
    assert power_to_detect(0.0, 0.2, 40) == pytest.approx(0.05, abs=1e-6)
    assert power_to_detect(0.1, 0.2, 1) == 0.0


def test_drift_alarm_needs_min_pairs_and_a_disjoint_interval() -> None:
    acc = AuditAccumulator(("p",), min_pairs=6)
    acc.add({"power": [-0.31, -0.29, -0.30]}, [False] * 3, [False] * 3)
    assert not acc.drift_alarm("power", 0.1, 0.2)  # far off, but too few pairs yet
    acc.add({"power": [-0.30, -0.32, -0.28]}, [False] * 3, [False] * 3)
    assert acc.rounds == 2 and acc.estimate("power").n == 6
    assert acc.drift_alarm("power", 0.1, 0.2)  # the plan said +0.1..+0.2, replies show -0.3
    assert not acc.drift_alarm("power", -0.4, -0.2)  # the plan is inside


def test_quality_alarm_compares_guarded_with_unguarded_replies() -> None:
    acc = AuditAccumulator(("p",), min_pairs=8)
    acc.add({"power": [0.0] * 12}, [True] * 9 + [False] * 3, [False] * 11 + [True])
    assert acc.quality_alarm()
    fine = AuditAccumulator(("p",), min_pairs=8)
    fine.add({"power": [0.0] * 12}, [True] + [False] * 11, [True] + [False] * 11)
    assert not fine.quality_alarm()


def test_non_finite_differences_are_refused() -> None:
    with pytest.raises(ValueError, match="not finite"):
        AuditAccumulator(("p",)).add({"power": [float("nan")]}, [False], [False])


@dataclass
class _State:
    config: GuardConfig
    plans: dict[str, Plan]

    def plan(self, name: str) -> Plan:
        return self.plans[name]


class _Judge:
    """Scores 'power' from the text: guarded replies say 'LOW', unguarded ones 'HIGH'."""

    dimensions = tuple(DIMS)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(DIMS)), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, DIMS.index("power")] = -0.3 if "LOW" in t else 0.1
            out[i, DIMS.index("achievement")] = 0.05 * (i % 3)  # noise
        return out


class _Auditor(ReplyAuditor):
    """The real round logic over fake generation and quality."""

    degrade_guarded = False

    def replies(self, state, profile, prompts):  # type: ignore[no-untyped-def]
        return [ReplyPair(p, f"LOW {p.id}", f"HIGH {p.id}", None, None) for p in prompts]

    def degraded(self, pairs):  # type: ignore[no-untyped-def]
        return [self.degrade_guarded] * len(pairs), [False] * len(pairs)


def _auditor(profile: ProfileSpec, *, busy: bool = False, units: str = "auto") -> tuple[_Auditor, GuardMetrics, _State]:
    plan = plan_levers(profile, fake_bundle_v2(), LimitsSpec(max_levers=1), name="default", units=units)
    config = GuardConfig(audit=AuditSpec(prompts_per_audit=4, min_pairs=8))
    state = _State(config, {"default": plan, "plain": plan_levers(ProfileSpec(), fake_bundle(), LimitsSpec())})
    metrics = GuardMetrics()
    prompts = load_prompts(dimensions=None).split("test")
    auditor = _Auditor(
        lambda: state,
        None,
        _Judge(),
        CALIBRATION,
        prompts,
        metrics,  # type: ignore[arg-type]
        busy=lambda: busy,
    )
    return auditor, metrics, state


def _gauge(metrics: GuardMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_rounds_accumulate_and_publish_interval_power_and_alarms() -> None:
    auditor, metrics, state = _auditor(ProfileSpec(targets={"power": TargetSpec(direction="decrease")}))
    assert state.plan("default").units == "replies"
    auditor.run_once()
    acc = auditor.accumulators["default"]
    assert acc.estimate("power").n == 4 and "plain" not in auditor.accumulators  # no levers: nothing to audit
    assert _gauge(metrics, "causalguard_audit_drift_alarm", profile="default", value="power") == 0  # < min_pairs
    auditor.run_once()
    assert acc.estimate("power").n == 8 and acc.rounds == 2
    assert _gauge(metrics, "causalguard_audited_value_change", profile="default", value="power") == pytest.approx(-0.4)
    assert _gauge(metrics, "causalguard_audit_pairs", profile="default") == 8
    # the plan forecasts a smaller drop in replies (its 95% interval is above -0.4); replies show -0.40
    assert _gauge(metrics, "causalguard_audit_drift_alarm", profile="default", value="power") == 1
    assert _gauge(metrics, "causalguard_audit_power", profile="default", value="power") == pytest.approx(1.0)
    assert _gauge(metrics, "causalguard_audit_quality_alarm", profile="default") == 0
    assert _gauge(metrics, "causalguard_audits_total", profile="default", outcome="ok") == 2
    assert _gauge(metrics, "causalguard_audited_value_score", profile="default", value="power") == pytest.approx(-0.3)
    # side-effect drift: every value but the target
    assert _gauge(metrics, "causalguard_side_effect_drift", profile="default", value="power") is None
    other = next(v for v in acc.diffs if v != "power")
    expected = acc.estimate(other).mean - state.plan("default").forecast_for(other).change
    assert _gauge(metrics, "causalguard_side_effect_drift", profile="default", value=other) == pytest.approx(expected)


def test_a_survey_units_plan_is_audited_but_not_compared() -> None:
    auditor, metrics, _ = _auditor(ProfileSpec(targets={"power": TargetSpec(direction="decrease")}), units="survey")
    auditor.run_once()
    auditor.run_once()
    assert _gauge(metrics, "causalguard_audited_value_change", profile="default", value="power") == pytest.approx(-0.4)
    assert _gauge(metrics, "causalguard_audit_drift_alarm", profile="default", value="power") == 0
    assert _gauge(metrics, "causalguard_audit_power", profile="default", value="power") is None


def test_degraded_guarded_replies_raise_the_quality_alarm() -> None:
    auditor, metrics, _ = _auditor(ProfileSpec(targets={"power": TargetSpec(direction="decrease")}))
    auditor.degrade_guarded = True
    auditor.run_once()
    auditor.run_once()
    assert _gauge(metrics, "causalguard_audit_quality_alarm", profile="default") == 1
    assert _gauge(metrics, "causalguard_audit_degraded_reply_rate", profile="default", arm="guarded") == 1.0


def test_a_busy_server_skips_rounds_and_counts_them() -> None:
    auditor, metrics, _ = _auditor(ProfileSpec(targets={"power": TargetSpec(direction="decrease")}), busy=True)
    auditor.run_once()
    assert auditor.accumulators == {}
    assert _gauge(metrics, "causalguard_audits_total", profile="default", outcome="skipped_busy") == 1


def test_a_new_plan_starts_a_new_accumulator() -> None:
    auditor, _, state = _auditor(ProfileSpec(targets={"power": TargetSpec(direction="decrease")}))
    auditor.run_once()
    state.plans["default"] = plan_levers(
        ProfileSpec(targets={"power": TargetSpec(direction="increase")}), fake_bundle_v2(), LimitsSpec(max_levers=1)
    )
    auditor.run_once()
    assert auditor.accumulators["default"].rounds == 1
    assert auditor.accumulators["default"].plan_key[1] == "role:power:+"


def test_a_failing_round_is_counted_not_raised() -> None:
    auditor, metrics, _ = _auditor(ProfileSpec(targets={"power": TargetSpec(direction="decrease")}))

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("judge fell over")

    auditor.replies = broken  # type: ignore[method-assign]
    auditor.run_once()
    assert _gauge(metrics, "causalguard_audits_total", profile="default", outcome="error") == 1


def test_the_periodic_worker_repeats_until_stopped_and_starts_once() -> None:
    import threading

    from causalguard.runtime.periodic import PeriodicWorker

    class Counter(PeriodicWorker):
        def __init__(self) -> None:
            super().__init__()
            self.rounds = 0
            self.third = threading.Event()

        def run_once(self) -> None:
            self.rounds += 1
            if self.rounds == 3:
                self.third.set()

        def pause_seconds(self) -> float:
            return 0.01

    worker = Counter()
    worker.start()
    worker.start()  # idempotent: one thread
    assert worker.third.wait(5)
    worker.stop()
    done = worker.rounds
    assert done >= 3 and not any(t.name == Counter.thread_name and t.is_alive() for t in threading.enumerate())
    assert worker.rounds == done  # nothing runs after stop


def test_in_proxy_mode_audit_replies_come_from_the_upstream_with_the_served_messages() -> None:
    import httpx

    from causalguard.config.schema import UpstreamSpec
    from causalguard.runtime.upstream_replies import upstream_completer

    sent: list[dict] = []  # type: ignore[type-arg]

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append(body)
        guarded = any("power" in m["content"].lower() for m in body["messages"] if m["role"] == "system")
        content = "LOW" if guarded else "HIGH"
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": content}}]})

    plan = plan_levers(
        ProfileSpec(targets={"power": TargetSpec(direction="decrease")}),
        fake_bundle_v2(),
        LimitsSpec(max_levers=1),
        name="default",
        units="replies",
        sae_available=False,
    )
    config = GuardConfig(system_prompt="Be kind.", audit=AuditSpec(prompts_per_audit=2, max_new_tokens=9))
    state = _State(config, {"default": plan})
    spec = UpstreamSpec(base_url="http://upstream.test/v1", model="up")
    auditor = ReplyAuditor(
        lambda: state,
        None,
        _Judge(),
        CALIBRATION,  # type: ignore[arg-type]
        load_prompts(dimensions=None).split("test"),
        GuardMetrics(),
        complete=upstream_completer(spec, transport=httpx.MockTransport(handler)),
    )
    prompts = auditor.prompts[:2]
    pairs = auditor.replies(state, "default", prompts)
    assert [(p.guarded, p.unguarded) for p in pairs] == [("LOW", "HIGH"), ("LOW", "HIGH")]
    assert all(body["model"] == "up" and body["max_tokens"] == 9 and body["temperature"] == 0.0 for body in sent)
    guarded_system = sent[0]["messages"][0]["content"]
    assert guarded_system.startswith("Be kind.") and plan.role_instructions()[0] in guarded_system
    assert sent[2]["messages"][0] == {"role": "system", "content": "Be kind."}
    assert sent[0]["messages"][1]["content"] == prompts[0].text


def test_in_proxy_mode_audits_wait_for_the_upstream_and_yield_to_users() -> None:
    plan = plan_levers(
        ProfileSpec(targets={"power": TargetSpec(direction="decrease")}),
        fake_bundle_v2(),
        LimitsSpec(max_levers=1),
        name="default",
        units="replies",
        sae_available=False,
    )
    state = _State(GuardConfig(audit=AuditSpec(prompts_per_audit=3)), {"default": plan})
    calls: list[int] = []
    users = {"waiting": False, "up": False}

    def complete(messages, max_tokens, extra):  # type: ignore[no-untyped-def]
        calls.append(max_tokens)
        users["waiting"] = len(calls) == 2  # a user request arrives while the second audit reply is made
        return "LOW" if len(calls) % 2 else "HIGH"

    metrics = GuardMetrics()
    auditor = ReplyAuditor(
        lambda: state,
        None,
        _Judge(),
        CALIBRATION,  # type: ignore[arg-type]
        load_prompts(dimensions=None).split("test"),
        metrics,
        busy=lambda: users["waiting"],
        complete=complete,
        ready=lambda: users["up"],
    )
    auditor.run_once()
    assert (
        calls == []
        and _gauge(metrics, "causalguard_audits_total", profile="default", outcome="skipped_upstream_down") == 1
    )  # never before the upstream was seen up
    users["up"] = True
    auditor.run_once()
    assert len(calls) == 2  # it yielded before the third upstream call
    assert _gauge(metrics, "causalguard_audits_total", profile="default", outcome="skipped_busy") == 1


def test_failing_rounds_log_one_line_and_back_off(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    auditor, metrics, _ = _auditor(ProfileSpec(targets={"power": TargetSpec(direction="decrease")}))

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ConnectionError("upstream refused\nsecond line")

    auditor.replies = broken  # type: ignore[method-assign]
    base = auditor.pause_seconds()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            auditor.run_once()
    records = [r for r in caplog.records if "reply audit" in r.getMessage()]
    assert len(records) == 1 and records[0].exc_info is None  # once per interval, no traceback
    assert "ConnectionError: upstream refused" in records[0].getMessage()
    assert "second line" not in records[0].getMessage()
    assert auditor.pause_seconds() == 8 * base  # three failed rounds in a row
    assert _gauge(metrics, "causalguard_audits_total", profile="default", outcome="error") == 3
    auditor.replies = _Auditor.replies.__get__(auditor)  # type: ignore[method-assign]
    auditor.run_once()
    assert auditor.pause_seconds() == base
