"""ValueGuard on a real (tiny, random) HF model with a real sae-lens SAE: levers, isolation, streaming,
reload, audits and metrics. The catalog is synthetic (tests/guard_fakes.py)."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from causalguard import ConfigError
from causalguard.adapters.hf.hooks import decoder_layers
from causalguard.adapters.hf.sae import LoadedSae
from causalguard.metrics import GuardMetrics
from causalguard.models.loaded import LoadedModel
from causalguard.runtime import ValueGuard
from causalguard.runtime.state import UnknownProfileError
from tests.guard_fakes import GUARD_YAML, fake_bundle_with_sae

ASK = [{"role": "user", "content": "What should I do with my life?"}]


@pytest.fixture
def guard(tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "guard.yaml"
    path.write_text(GUARD_YAML)
    with ValueGuard(
        tiny_lm.model, tiny_lm.tokenizer, path, bundle=fake_bundle_with_sae(tiny_sae.path), metrics=GuardMetrics()
    ) as g:
        yield g
    assert all(not layer._forward_hooks for layer in decoder_layers(tiny_lm.model))


def _sample(g: ValueGuard, name: str, **labels: str) -> float | None:
    return g.metrics.registry.get_sample_value(name, labels)


def test_profiles_are_planned_and_published(guard: ValueGuard) -> None:
    assert [lever.id for lever in guard.plan().levers] == ["sae:f7:-0.5"]
    assert [lever.id for lever in guard.plan("kind").levers] == ["role:benevolence:+"]
    assert guard.plan("plain").levers == ()
    assert "sae:f7:-0.5" in guard.explain() and "tolerance 0.05" in guard.explain()
    predicted = _sample(guard, "causalguard_predicted_value_change", profile="default", value="power")
    assert predicted == pytest.approx(-0.15)
    assert _sample(guard, "causalguard_value_tolerance", profile="default", value="achievement") == 0.05
    with pytest.raises(UnknownProfileError, match="profiles: default, kind, plain"):
        guard.plan("nope")


def test_levers_change_the_answer_and_are_counted(guard: ValueGuard) -> None:
    steered = guard.generate(ASK, max_new_tokens=8)
    plain = guard.generate(ASK, profile="plain", max_new_tokens=8)
    role = guard.generate(ASK, profile="kind", max_new_tokens=8)
    assert steered.text != plain.text and role.text != plain.text
    assert steered.levers == ("sae:f7:-0.5",) and plain.levers == ()
    assert _sample(guard, "causalguard_requests_total", profile="default", method="sae", outcome="ok") == 1
    assert _sample(guard, "causalguard_requests_total", profile="kind", method="role", outcome="ok") == 1
    assert _sample(guard, "causalguard_levers_applied_total", profile="default", kind="sae") == 1
    tokens = _sample(guard, "causalguard_generated_tokens_total", profile="plain", method="none")
    assert tokens == plain.completion_tokens


def test_concurrent_mixed_profiles_match_each_request_run_alone(guard: ValueGuard) -> None:
    profiles = ["default", "plain", "kind"] * 4
    alone = {p: guard.generate(ASK, profile=p, max_new_tokens=10).text for p in set(profiles)}
    with ThreadPoolExecutor(max_workers=6) as pool:
        together = list(pool.map(lambda p: guard.generate(ASK, profile=p, max_new_tokens=10).text, profiles))
    assert together == [alone[p] for p in profiles]


def test_a_batch_steers_only_its_sae_rows(guard: ValueGuard) -> None:
    rows = guard.generate_batch([ASK, ASK], profiles=["default", "plain"], max_new_tokens=6)
    assert rows[0].text == guard.generate(ASK, max_new_tokens=6).text
    assert rows[1].text == guard.generate(ASK, profile="plain", max_new_tokens=6).text


def test_stream_matches_generate_and_stops_when_closed(guard: ValueGuard, tiny_sae: LoadedSae) -> None:
    whole = guard.generate(ASK, max_new_tokens=12).text
    assert "".join(guard.stream(ASK, max_new_tokens=12)) == whole
    pieces = guard.stream(ASK, max_new_tokens=200)
    next(pieces)
    pieces.close()  # the client went away
    assert _sample(guard, "causalguard_requests_total", profile="default", method="sae", outcome="cancelled") == 1
    layer = decoder_layers(guard.lm.model)[tiny_sae.layer]
    assert len(layer._forward_hooks) == 1  # only the guard's own dispatcher hook remains


def test_reload_swaps_valid_configs_and_keeps_the_old_on_error(guard: ValueGuard, tmp_path: Path) -> None:
    assert guard.config_path is not None
    guard.config_path.write_text(
        GUARD_YAML.replace("power: {direction: decrease}", "power: {direction: increase}").replace(
            "achievement: {tolerance: 0.05}", "achievement: {tolerance: 0.5}"
        )
    )
    guard.reload()
    assert [lever.id for lever in guard.plan().levers] == ["role:power:+"]
    guard.config_path.write_text(GUARD_YAML.replace("power:", "powr:"))
    with pytest.raises(ConfigError, match="did you mean 'power'"):
        guard.reload()
    assert [lever.id for lever in guard.plan().levers] == ["role:power:+"]
    assert _sample(guard, "causalguard_config_reloads_total", outcome="ok") == 1
    assert _sample(guard, "causalguard_config_reloads_total", outcome="error") == 1


def test_audits_publish_scores_and_drift(guard: ValueGuard) -> None:
    results = guard.auditor.run_once()
    assert set(results) == {"default", "kind", "plain"}
    default = results["default"]
    assert set(default.changes) == {"achievement", "power", "benevolence"} and default.items == 6
    assert all(v == 0 for v in results["plain"].changes.values())  # unguarded vs unguarded
    assert "power" not in default.drift  # the target: its change is compared with the plan, not drift
    predicted = guard.plan().forecast_for("achievement").change
    assert default.drift["achievement"] == pytest.approx(default.changes["achievement"] - predicted)
    assert _sample(guard, "causalguard_side_effect_drift", profile="default", value="power") is None
    assert _sample(guard, "causalguard_audited_value_change", profile="default", value="power") == pytest.approx(
        default.changes["power"]
    )
    assert _sample(guard, "causalguard_audits_total", profile="default", outcome="ok") == 1
    assert _sample(guard, "causalguard_audit_last_success_timestamp_seconds", profile="default") > 0


def test_failing_or_slow_audits_never_break_serving(guard: ValueGuard, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("audit exploded")

    monkeypatch.setattr(guard.auditor, "audit", broken)
    assert guard.auditor.run_once() == {}
    assert _sample(guard, "causalguard_audits_total", profile="default", outcome="error") == 1
    release = threading.Event()

    def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
        release.wait(5)
        raise RuntimeError("too late")

    monkeypatch.setattr(guard.auditor, "audit", slow)
    fast = guard.config.audit.model_copy(update={"timeout_seconds": 0.2})
    guard.reload(guard.config.model_copy(update={"audit": fast}))
    started = time.perf_counter()
    guard.auditor.run_once()
    assert time.perf_counter() - started < 3
    assert _sample(guard, "causalguard_audits_total", profile="plain", outcome="timeout") == 1
    assert guard.generate(ASK, max_new_tokens=3).completion_tokens == 3  # serving is unaffected
    release.set()


def test_background_audits_run_on_their_interval(tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path) -> None:
    path = tmp_path / "guard.yaml"
    path.write_text(GUARD_YAML.replace("enabled: false", "enabled: true\n  interval_seconds: 0.2"))
    with ValueGuard(tiny_lm.model, tiny_lm.tokenizer, path, bundle=fake_bundle_with_sae(tiny_sae.path)) as g:
        deadline = time.time() + 30
        while (
            time.time() < deadline
            and (
                g.metrics.registry.get_sample_value("causalguard_audits_total", {"profile": "plain", "outcome": "ok"})
                or 0
            )
            < 2
        ):
            time.sleep(0.1)
        assert (
            g.metrics.registry.get_sample_value("causalguard_audits_total", {"profile": "plain", "outcome": "ok"}) >= 2
        )


def test_an_audit_round_scores_the_unguarded_model_once(guard: ValueGuard, monkeypatch: pytest.MonkeyPatch) -> None:
    import causalguard.runtime.audit as audit_module
    from causalguard.steering_conditions import NoSteering

    calls: list[str] = []
    real = audit_module.StatementContrast

    class Counting(real):  # type: ignore[misc, valid-type]
        def score(self, lm, role, steering, items):  # type: ignore[no-untyped-def]
            calls.append("unguarded" if isinstance(steering, NoSteering) else "guarded")
            return super().score(lm, role, steering, items)

    monkeypatch.setattr(audit_module, "StatementContrast", Counting)
    guard.auditor.run_once()
    assert calls.count("unguarded") == 1 and calls.count("guarded") == 3


def test_reload_from_another_file_names_that_file_and_its_lines(guard: ValueGuard, tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("# a comment shifts every line\n\n" + GUARD_YAML.replace("  power:", "  powr:", 1))
    line = other.read_text().splitlines().index("  powr: {direction: decrease}") + 1
    with pytest.raises(ConfigError) as err:
        guard.reload(other)
    assert f"{other}:{line}: targets.powr" in str(err.value)
    assert guard.config_path is not None and guard.config_path.name == "guard.yaml"  # the old config stays


def test_the_config_file_is_parsed_once_at_start_up(
    tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    import causalguard.yaml_files as yaml_files
    from causalguard.config.loading import SourcedConfig
    from causalguard.server.app import create_app

    path = tmp_path / "guard.yaml"
    path.write_text(GUARD_YAML)
    reads: list[Path] = []
    real = yaml_files.read_yaml
    monkeypatch.setattr(yaml_files, "read_yaml", lambda p: (reads.append(p), real(p))[1])

    def factory(config: SourcedConfig, metrics: GuardMetrics) -> ValueGuard:
        return ValueGuard(
            tiny_lm.model,
            tiny_lm.tokenizer,
            config,
            bundle=fake_bundle_with_sae(tiny_sae.path),
            metrics=metrics,
            start_audits=False,
        )

    with TestClient(create_app(path, guard_factory=factory)) as client:
        for _ in range(100):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.1)
        assert client.get("/readyz").status_code == 200
        assert client.get("/v1/models").json()["data"][0]["id"] == "tiny-llama"
    assert reads == [path]


def test_a_base_model_without_a_chat_template_is_refused_at_its_config_line(
    tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path
) -> None:
    import copy

    base_tokenizer = copy.copy(tiny_lm.tokenizer)  # like Gemma 3 270M base: no chat template
    base_tokenizer.chat_template = None
    path = tmp_path / "guard.yaml"
    path.write_text(GUARD_YAML)
    with pytest.raises(ConfigError, match=r"guard.yaml:\d+: model: .*has no chat template") as caught:
        ValueGuard(tiny_lm.model, base_tokenizer, path, bundle=fake_bundle_with_sae(tiny_sae.path))
    assert "upstream" in str(caught.value) and tiny_lm.tokenizer.chat_template  # the original is untouched
    assert all(not layer._forward_hooks for layer in decoder_layers(tiny_lm.model))
