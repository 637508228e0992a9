"""The live value monitor on the real default model: replies judged in-process (scores exposed in a stream),
and end to end, a real server process driven by the ``openai`` client and scraped by a real Prometheus,
where a profile whose lever was exported with the wrong sign trips the drift alarm and an unchanged one
does not. Proxy mode against llama.cpp lives in test_proxy_llama_cpp.py."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from causalguard.bundle.format import resolve_bundle_dir
from causalguard.bundle.integrity import seal_bundle
from causalguard.judging.prompt_sets import load_prompts
from causalguard.runtime.value_guard import ValueGuard
from causalguard.server.process import serve_in_process
from tests.server.test_server_process import start_prometheus

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"
FLIPPED = "vector:stimulation:+:L21:0.15:all"  # the lever planned for stimulation up


def test_in_process_replies_are_judged_and_a_stream_can_carry_its_scores(tmp_path: Path) -> None:
    config = tmp_path / "guard.yaml"
    config.write_text(
        f"model: {MODEL}\ntargets:\n  stimulation: {{direction: increase}}\nmethod: vector\n"
        "profiles:\n  plain: {}\naudit: {enabled: false}\nmonitor: {sample_rate: 1.0}\n"
    )
    ask = [{"role": "user", "content": "I have a free weekend. Any ideas?"}]
    with ValueGuard.from_config(config, start_audits=False) as guard:
        assert guard.monitor is not None
        plain = guard.generate(ask, profile="plain", max_new_tokens=24)
        guarded = guard.generate(ask, max_new_tokens=24)
        assert plain.scores is None and plain.text != guarded.text
        assert guard.monitor.drain(60)
        for profile in ("plain", "default"):
            window = guard.monitor.window(profile)
            assert window is not None and len(window) == 1
        # a stream closed early is counted, not judged
        pieces = guard.stream(ask, max_new_tokens=24)
        next(pieces)
        pieces.close()
        sample = guard.metrics.registry.get_sample_value
        assert sample("causalguard_monitor_replies_total", {"profile": "default", "outcome": "cancelled"}) == 1
        # opt-in readout: the stream's report carries the reply's scores, judged like the monitor's
        exposed = guard.config.model_copy(
            update={"monitor": guard.config.monitor.model_copy(update={"expose_scores": True})}
        )
        guard.reload(exposed)
        report: dict = {}
        text = "".join(guard.stream(ask, max_new_tokens=24, report=report))
        scores = report["scores"]
        assert set(scores) == set(guard.catalog.dimensions) and all(math.isfinite(x) for x in scores.values())
        assert scores == pytest.approx(
            dict(zip(guard.monitor.judge.dimensions, guard.monitor.judge.score([text])[0].tolist(), strict=True)),
            abs=1e-5,
        )
        assert guard.generate(ask, max_new_tokens=24).scores is not None


def _flipped_bundle(folder: Path) -> Path:
    """The shipped bundle with one vector lever's strength exported with the wrong sign and twice the size (an
    artifact fault: the plan and its forecast still say stimulation up)."""
    bundle = folder / "bundle"
    shutil.copytree(resolve_bundle_dir("builtin", MODEL), bundle)
    catalog = json.loads((bundle / "catalog.json").read_text())
    (lever,) = [lever for lever in catalog["levers"] if lever["id"] == FLIPPED]
    lever["strength"] = -2 * lever["strength"]
    (bundle / "catalog.json").write_text(json.dumps(catalog))
    seal_bundle(bundle)  # sealed like a real export: the hashes vouch for the bytes, not for the sign
    return bundle


@pytest.mark.heavy  # about 65 s on 2 cores; CI runs it (.ci/run)
def test_prometheus_sees_live_means_and_the_drift_alarm_of_a_flipped_lever(tmp_path: Path) -> None:
    import openai

    bundle = _flipped_bundle(tmp_path)
    config = tmp_path / "guard.yaml"
    config.write_text(
        f"model: {MODEL}\nbundle: {bundle}\nsystem_prompt: You are a helpful assistant.\n"
        "targets:\n  stimulation: {direction: increase}\nmethod: vector\n"
        "profiles:\n  guided-stimulation:\n    targets:\n      stimulation: {direction: increase}\n"
        "    method: guided\n  plain: {}\n"
        "audit: {enabled: false}\nmonitor: {sample_rate: 1.0, min_replies: 20}\n"
    )
    prompts = [p.text for p in load_prompts().split("dev")][:24]
    log_path = tmp_path / "server.log"
    with serve_in_process(config, log_path, log_level="info", extra_args=("--log-format", "json")) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")

        def ask(job: tuple[str, str]) -> str:
            model, text = job
            reply = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": text}], max_tokens=32, temperature=0
            )
            return reply.choices[0].message.content or ""

        jobs = [
            (f"{MODEL}:{profile}", text) for text in prompts for profile in ("plain", "default", "guided-stimulation")
        ]
        with ThreadPoolExecutor(16) as pool:
            replies = list(pool.map(ask, jobs))
        process, api = start_prometheus(server.port, tmp_path)

        def query(expr: str) -> dict[tuple[str, str], float]:
            data = httpx.get(f"{api}/query", params={"query": expr}, timeout=5).json()
            return {
                (r["metric"].get("profile", ""), r["metric"].get("value", "")): float(r["value"][1])
                for r in data["data"]["result"]
            }

        try:
            judged: dict[tuple[str, str], float] = {}
            deadline = time.time() + 120
            while time.time() < deadline:
                with contextlib.suppress(httpx.HTTPError, KeyError, json.JSONDecodeError):
                    judged = query('sum by (profile) (causalguard_monitor_replies_total{outcome="judged"})')
                if len(judged) == 3 and all(v == len(prompts) for v in judged.values()):
                    break
                time.sleep(1)
            assert {p for p, _ in judged} == {"plain", "default", "guided-stimulation"}, judged
            assert all(v == len(prompts) for v in judged.values()), judged
            means = query('causalguard_monitor_value_score_mean{value="stimulation"}')
            assert {p for p, _ in means} == {"plain", "default", "guided-stimulation"}
            alarms = query("causalguard_monitor_drift_alarm")
            change = query('causalguard_monitor_value_change{value="stimulation"}')[("default", "stimulation")]
            high = query('causalguard_monitor_value_change_ci_high{value="stimulation"}')[("default", "stimulation")]
            other = query('causalguard_monitor_value_change_ci_low{value="stimulation"}')
            print(f"flipped: change {change:+.3f}, ci_high {high:+.3f}; unchanged: {other}")
            assert change < 0, change  # the forecast says up; the flipped lever pushes stimulation down
            assert alarms[("default", "stimulation")] == 1, (change, alarms)
            assert alarms[("guided-stimulation", "stimulation")] == 0, alarms  # the same value, unflipped lever
            assert query("causalguard_monitor_queue_depth")[("", "")] == 0
        finally:
            process.terminate()
            process.wait(10)
        exposition = httpx.get(f"{server.url}/metrics/", timeout=10).text
    # nothing users wrote or read reaches the log or the metrics
    logged = log_path.read_text()
    assert "causalguard_monitor_value_score_mean" in exposition
    for text in [*prompts, *[r for r in replies if len(r) > 30]]:
        assert text[:30] not in logged and text[:30] not in exposition
