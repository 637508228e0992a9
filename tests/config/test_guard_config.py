"""The operator YAML: located errors with fixes, value names checked against the bundle, reload."""

import threading
from pathlib import Path

import pytest

from causalguard import ConfigError
from causalguard.config import ConfigHolder, load_guard_config
from tests.guard_fakes import DIMS
from tests.repo_paths import ROOT

GOOD = """\
model: smollm2-135m-instruct
targets:
  power: {direction: decrease}
protected:
  achievement: {tolerance: 0.1}
profiles:
  kind:
    targets:
      benevolence: {direction: increase}
audit:
  interval_seconds: 5
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "guard.yaml"
    path.write_text(text)
    return path


def test_a_good_file_loads_the_same_twice(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    one, two = load_guard_config(path, DIMS), load_guard_config(path, DIMS)
    assert one == two
    assert one.profile_names == ["default", "kind"]
    assert one.profile("kind").targets["benevolence"].direction == "increase"
    assert one.audit.interval_seconds == 5 and one.audit.items_per_audit == 24


def test_unknown_field_names_file_line_and_suggests(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("protected:", "protectd:"))
    with pytest.raises(ConfigError) as caught:
        load_guard_config(path, DIMS)
    problem = caught.value.problems[0]
    assert (problem.path, problem.line, problem.field) == (str(path), 4, "protectd")
    assert problem.hint == "did you mean 'protected'?"


def test_unknown_value_gets_did_you_mean_with_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("benevolence: {direction", "benevolance: {direction"))
    with pytest.raises(ConfigError) as caught:
        load_guard_config(path, DIMS)
    problem = caught.value.problems[0]
    assert problem.field == "profiles.kind.targets.benevolance" and problem.line == 9
    assert problem.hint == "did you mean 'benevolence'?"


def test_bad_target_and_bad_number_are_both_reported(tmp_path: Path) -> None:
    text = GOOD.replace("{direction: decrease}", "{direction: decrease, change: -0.2}").replace(
        "interval_seconds: 5", "interval_seconds: -1"
    )
    with pytest.raises(ConfigError) as caught:
        load_guard_config(_write(tmp_path, text), DIMS)
    fields = {p.field for p in caught.value.problems}
    assert fields == {"targets.power", "audit.interval_seconds"}
    assert "exactly one of" in str(caught.value)


def test_target_and_protected_at_once_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace("achievement: {tolerance: 0.1}", "power: {tolerance: 0.1}")
    with pytest.raises(ConfigError, match="both a target and protected"):
        load_guard_config(_write(tmp_path, text), DIMS)


def test_yaml_is_parsed_safely(tmp_path: Path) -> None:
    path = _write(tmp_path, "model: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_guard_config(path)


def test_reload_validates_first_and_swaps_atomically() -> None:
    calls = iter([1, 2])
    holder: ConfigHolder[int] = ConfigHolder(lambda: next(calls))
    snapshot = holder.current()
    assert holder.reload().state == 2 and snapshot.state == 1  # a request's snapshot does not change

    def broken() -> int:
        raise ConfigError.single("guard.yaml", "bad")

    with pytest.raises(ConfigError):
        holder.reload(broken)
    assert holder.current().state == 2 and holder.current().version == 2

    seen: list[int] = []
    threads = [threading.Thread(target=lambda: seen.append(holder.current().state)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(seen) == {2}


def test_the_committed_reference_matches_the_schema() -> None:
    from causalguard.config.reference import render_reference

    committed = ROOT / "docs" / "guard-config.md"
    assert committed.read_text() == render_reference(), "run: python -m causalguard.config.reference > docs/..."


def test_the_annotated_deploy_example_is_valid() -> None:
    example = ROOT / "deploy" / "guard.yaml"
    config = load_guard_config(example, dimensions=["stimulation", "security", "benevolence"])
    assert config.profile_names == ["default", "plain"]


@pytest.mark.parametrize("kind", ["config", "inventory", "roles"])
def test_duplicate_yaml_keys_are_errors_naming_both_lines(tmp_path: Path, kind: str) -> None:
    from causalguard.roles import load_roles_file
    from causalguard.values import load_inventory

    texts = {
        "config": "model: x\ntargets:\n  power: {direction: increase}\nprotected:\n  achievement: {tolerance: 0.1}\n"
        "protected:\n  benevolence: {tolerance: 0.2}\n",
        "inventory": "name: inv\nname: other\ndimensions: []\n",
        "roles": "roles:\n  - id: judge\n    description: a judge\n    description: a retired judge\n",
    }
    path = tmp_path / f"{kind}.yaml"
    path.write_text(texts[kind])
    loaders = {"config": load_guard_config, "inventory": load_inventory, "roles": load_roles_file}
    with pytest.raises(ConfigError, match=r"duplicate key '\w+' \(first on line \d\)") as err:
        loaders[kind](path)
    assert f"{path}:" in str(err.value)


def test_a_folder_or_an_oversized_yaml_file_is_a_clear_error(tmp_path: Path) -> None:
    import causalguard.yaml_files as yaml_files

    with pytest.raises(ConfigError, match="is a folder, not a YAML file"):
        load_guard_config(tmp_path)
    big = tmp_path / "big.yaml"
    big.write_text("model: x\n" + "# padding\n" * (yaml_files.MAX_YAML_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match=r"over the \d+-byte limit"):
        load_guard_config(big)


def test_every_infeasible_profile_is_named_at_once(tmp_path: Path) -> None:
    import yaml

    from causalguard.config.loading import read_guard_config
    from causalguard.planning import PlanInfeasibleError
    from causalguard.runtime.state import build_guard_state
    from tests.guard_fakes import GUARD_YAML, fake_bundle

    data = yaml.safe_load(GUARD_YAML)
    data["profiles"]["strict"] = {
        "targets": {"power": {"direction": "decrease"}},
        "protected": {"achievement": {"tolerance": 0.05}},
    }
    path = tmp_path / "guard.yaml"
    path.write_text(yaml.safe_dump(data))
    sourced = read_guard_config(path)
    with pytest.raises(PlanInfeasibleError) as local:  # no SAE loaded: role levers cannot protect achievement
        build_guard_state(sourced, fake_bundle(), sae=None, local_model=True)
    assert "2 profiles are infeasible" in str(local.value)
    assert "profile 'default'" in str(local.value) and "profile 'strict'" in str(local.value)
    with pytest.raises(ConfigError) as remote:
        build_guard_state(sourced, fake_bundle(), sae=None, local_model=False)
    fields = sorted(p.field for p in remote.value.problems)
    assert fields == ["profiles.strict.targets", "targets"] and all(p.line for p in remote.value.problems)
    data["profiles"].pop("strict")
    data.pop("protected")  # the default profile alone, now feasible: the other profiles plan too
    path.write_text(yaml.safe_dump(data))
    state = build_guard_state(read_guard_config(path), fake_bundle(), sae=None, local_model=True)
    assert set(state.plans) == {"default", "kind", "plain"}


def test_an_infeasible_serve_plain_profile_is_served_unguarded_and_the_rest_are_planned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    import yaml

    from causalguard.config.loading import read_guard_config
    from causalguard.planning import PlanInfeasibleError
    from causalguard.planning.explain import explain_plan
    from causalguard.runtime.state import build_guard_state
    from tests.guard_fakes import GUARD_YAML, fake_bundle, fake_catalog

    data = yaml.safe_load(GUARD_YAML)
    data["on_infeasible"] = "serve_plain"  # the default profile (power down, achievement protected) cannot plan
    data["profiles"]["strict"] = {
        "targets": {"power": {"direction": "decrease"}},
        "protected": {"achievement": {"tolerance": 0.05}},
    }
    path = tmp_path / "guard.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(PlanInfeasibleError) as refused:  # 'strict' still says error (the default)
        build_guard_state(read_guard_config(path), fake_bundle(), sae=None, local_model=True)
    assert "profile 'strict'" in str(refused.value) and "profile 'default'" not in str(refused.value)
    data["profiles"]["strict"]["on_infeasible"] = "serve_plain"
    path.write_text(yaml.safe_dump(data))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="causalguard.runtime.state"):
        state = build_guard_state(read_guard_config(path), fake_bundle(), sae=None, local_model=True)
    assert set(state.plans) == {"default", "kind", "plain", "strict"}
    for name in ("default", "strict"):
        plan = state.plans[name]
        assert plan.levers == () and plan.reasons[0].startswith(
            f"served unguarded (on_infeasible: serve_plain): profile '{name}' is infeasible"
        )
        assert plan.reasons[0] in explain_plan(plan, fake_catalog())
    assert state.plans["kind"].levers  # the feasible profile keeps its levers
    warned = [r.getMessage() for r in caplog.records]
    assert sum("served unguarded" in m for m in warned) == 2
    data["profiles"]["strict"]["on_infeasible"] = "ignore"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="on_infeasible"):
        read_guard_config(path)
