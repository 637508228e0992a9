"""The README's examples on the real default model with its shipped bundle, catalog and SAE."""

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from typer.testing import CliRunner

from causalguard.adapters.langchain import ChatHuggingFaceLocal, ChatValueGuard
from causalguard.cli import app
from causalguard.metrics import GuardMetrics, start_metrics_server
from causalguard.models.loaded import LoadedModel
from causalguard.runtime import ValueGuard
from causalguard.server.process import free_port

pytestmark = pytest.mark.slow
README_YAML = """\
model: smollm2-135m-instruct
targets:
  stimulation: {direction: increase}
protected:
  security: {tolerance: 0.2}
audit: {interval_seconds: 3, prompts_per_audit: 2, max_new_tokens: 16}
"""
ASK = [{"role": "user", "content": "What matters most in life?"}]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "guard.yaml"
    path.write_text(README_YAML)
    return path


def test_readme_example_plans_generates_and_audits_into_metrics(lm: LoadedModel, config: Path) -> None:
    metrics = GuardMetrics()
    port = free_port()
    server, _thread = start_metrics_server(metrics, port)
    try:
        with ValueGuard(lm.model, lm.tokenizer, config, metrics=metrics, name=lm.name) as guard:
            plan = guard.plan()
            assert plan.units == "replies" and plan.levers and plan.forecast_for("stimulation").low > 0
            assert abs(plan.forecast_for("security").change) <= 0.2
            text = guard.explain()
            assert "predicted side effects" in text and "security" in text and "tolerance 0.2" in text
            reply = guard.generate(ASK, max_new_tokens=12)
            assert reply.text and reply.levers == tuple(lever.id for lever in plan.levers)
            deadline = time.time() + 120  # one audit interval plus a reply audit round
            body = ""
            while time.time() < deadline:
                body = httpx.get(f"http://127.0.0.1:{port}/metrics").text
                if 'causalguard_audit_pairs{profile="default"}' in body:
                    break
                time.sleep(0.5)
            assert 'causalguard_audited_value_score{profile="default",value="stimulation"}' in body
            assert 'causalguard_audit_drift_alarm{profile="default",value="security"}' in body
    finally:
        server.shutdown()


def test_readme_langchain_chain_runs_on_the_local_model(lm: LoadedModel, config: Path) -> None:
    guarded = ChatValueGuard(inner=ChatHuggingFaceLocal(lm=lm), config=str(config), max_tokens=10, start_audits=False)
    try:
        chain = ChatPromptTemplate.from_messages([("human", "{question}")]) | guarded | StrOutputParser()
        answer = chain.invoke({"question": "What matters most in life?"})
        assert answer and answer == "".join(chain.stream({"question": "What matters most in life?"}))
    finally:
        guarded.close()


def test_plan_command_prints_every_profile(config: Path) -> None:
    config.write_text(README_YAML + "profiles:\n  plain: {}\n")
    result = CliRunner().invoke(app, ["plan", str(config)])
    assert result.exit_code == 0, result.output
    assert "Profile 'default'" in result.output and "Profile 'plain'" in result.output
    assert "unguarded" in result.output


def test_plan_command_explains_an_infeasible_profile(config: Path) -> None:
    config.write_text(README_YAML.replace("stimulation: {direction: increase}", "power: {direction: increase}"))
    proc = subprocess.run(
        [sys.executable, "-m", "causalguard.cli", "plan", str(config)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    # on this model no lever raises power in replies without degrading them: refused, with the reason
    assert "infeasible" in proc.stderr and "power" in proc.stderr and "fix:" in proc.stderr
    assert "no allowed lever built for power" in proc.stderr and "degrades replies" in proc.stderr


REPLY_AUDIT_YAML = """\
model: smollm2-135m-instruct
targets:
  stimulation: {direction: increase}
audit: {prompts_per_audit: 2, max_new_tokens: 24, min_pairs: 2}
"""


def test_one_real_reply_audit_round_judges_guarded_and_unguarded_replies(lm: LoadedModel, tmp_path: Path) -> None:
    config = tmp_path / "guard.yaml"
    config.write_text(REPLY_AUDIT_YAML)
    metrics = GuardMetrics()
    with ValueGuard(lm.model, lm.tokenizer, config, metrics=metrics, name=lm.name, start_audits=False) as guard:
        assert type(guard.auditor).__name__ == "ReplyAuditor" and guard.plan().units == "replies"
        accumulators = guard.auditor.run_once()
        acc = accumulators["default"]
        assert acc.rounds == 1 and acc.estimate("stimulation").n == 2
        assert len(acc.guarded_degraded) == 2 and len(acc.unguarded_degraded) == 2
        sample = metrics.registry.get_sample_value
        assert sample("causalguard_audits_total", {"profile": "default", "outcome": "ok"}) == 1
        assert sample("causalguard_audit_pairs", {"profile": "default"}) == 2
        change = sample("causalguard_audited_value_change", {"profile": "default", "value": "stimulation"})
        assert change is not None and abs(change - acc.estimate("stimulation").mean) < 1e-9
