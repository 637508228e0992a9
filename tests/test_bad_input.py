"""Bad input, table-driven: every case ends in a clear error naming the file and field, never a
traceback and never a silently different number. (More cases live beside their features:
test_guard_config.py, test_behaviour.py, test_survey.py, test_server_app.py.)"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from causalguard.bundle.format import load_bundle, shipped_bundle_dir
from causalguard.bundle.integrity import seal_bundle
from causalguard.config.loading import read_guard_config
from causalguard.errors import ConfigError

SHIPPED = shipped_bundle_dir("smollm2-135m-instruct")


def _bundle_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "bundle"
    folder.mkdir()
    for name in ("bundle.json", "effects.safetensors", "catalog.json", "behaviour.json"):
        shutil.copy(SHIPPED / name, folder / name)
    seal_bundle(folder)  # a bundle of some of the shipped files, sealed as such
    return folder


def _resealed(folder: Path) -> None:
    """Seal a damaged bundle again where its bundle.json still parses: the damage then has to be caught by
    the checks behind the hashes (schema, finiteness, cross-file consistency)."""
    with contextlib.suppress(ValueError):  # bundle.json itself is damaged: the loader's JSON checks see it first
        seal_bundle(folder)


def _tensors(folder: Path, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    tensors = load_file(str(folder / "effects.safetensors"))
    change(tensors)
    save_file(tensors, str(folder / "effects.safetensors"))


def _json(folder: Path, name: str, change: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    doc = json.loads((folder / name).read_text())
    change(doc)
    (folder / name).write_text(json.dumps(doc))


BUNDLE_CASES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "bundle.json not UTF-8": (
        lambda f: (f / "bundle.json").write_bytes(b'{"schema": "\xff"}'),
        "bundle.json",
        "not UTF-8",
    ),
    "effects missing": (lambda f: (f / "effects.safetensors").unlink(), "effects.safetensors", "missing"),
    "effects empty": (
        lambda f: (f / "effects.safetensors").write_bytes(b""),
        "effects.safetensors",
        "not a readable safetensors",
    ),
    "effects truncated": (
        lambda f: (f / "effects.safetensors").write_bytes((f / "effects.safetensors").read_bytes()[:200]),
        "effects.safetensors",
        "not a readable safetensors",
    ),
    "effects random bytes": (
        lambda f: (f / "effects.safetensors").write_bytes(bytes(range(256)) * 8),
        "effects.safetensors",
        "not a readable safetensors",
    ),
    "effects tensor missing": (
        lambda f: _tensors(f, lambda t: t.pop("class_low")),
        "effects.safetensors",
        "'class_low' is missing",
    ),
    "effects wrong shape": (
        lambda f: _tensors(f, lambda t: t.update(total=np.zeros((3, 3), dtype=np.float32))),
        "effects.safetensors",
        "expected (10, 10)",
    ),
    "effects NaN": (
        lambda f: _tensors(f, lambda t: t["total"].__setitem__((0, 1), np.nan)),
        "effects.safetensors",
        "NaN or infinite",
    ),
    "graph edge to an unknown value": (
        lambda f: _json(
            f, "bundle.json", lambda d: d["graph"]["edges"].append({**d["graph"]["edges"][0], "target": "greed"})
        ),
        "bundle.json",
        "graph",
    ),
    "catalog with other values": (
        lambda f: _json(f, "catalog.json", lambda d: d.update(dimensions=d["dimensions"][:2])),
        "catalog.json",
        "catalog's values",
    ),
    "catalog NaN effect": (
        lambda f: _json(
            f, "catalog.json", lambda d: d["levers"][0]["effects"][d["dimensions"][0]].update(mean=float("nan"))
        ),
        "catalog.json",
        "finite",
    ),
    "catalog infinite baseline": (
        lambda f: _json(f, "catalog.json", lambda d: d["baseline"][d["dimensions"][0]].update(ci_high=float("inf"))),
        "catalog.json",
        "finite",
    ),
}


@pytest.mark.parametrize("case", list(BUNDLE_CASES))
def test_a_bad_bundle_is_a_clear_error(tmp_path: Path, case: str) -> None:
    damage, file, message = BUNDLE_CASES[case]
    folder = _bundle_copy(tmp_path)
    load_bundle(folder)  # the copy itself is fine
    damage(folder)
    with pytest.raises(ConfigError) as unsealed:
        load_bundle(folder)  # any change to a sealed bundle is refused, naming the file
    assert file in str(unsealed.value), str(unsealed.value)
    _resealed(folder)
    with pytest.raises(ConfigError) as caught:
        load_bundle(folder)
    assert file in str(caught.value) and message in str(caught.value), str(caught.value)


CONFIG_CASES: dict[str, tuple[str, str]] = {
    "NaN change": ("targets:\n  power: {change: .nan}\n", "targets.power.change"),
    "infinite tolerance": ("protected:\n  power: {tolerance: .inf}\n", "protected.power.tolerance"),
    "huge change": ("targets:\n  power: {change: 1e308}\n", "targets.power.change"),
    "NaN limit": ("limits: {side_effect_weight: .nan}\n", "limits.side_effect_weight"),
    "CPU share over 1": ("audit: {max_cpu_share: 2}\n", "audit.max_cpu_share"),
    "unknown units": ("units: nats\n", "units"),
    "true as a number": ("limits: {max_levers: true}\n", "limits.max_levers"),
    "false as a change": ("targets:\n  power: {change: false}\n", "targets.power.change"),
    "no audited values": ("audit: {values: []}\n", "audit.values"),
    "max_tokens beyond any context": ("server: {max_tokens_limit: 1000000000000}\n", "server.max_tokens_limit"),
    "timeout of 1e308 s": ("server: {request_timeout_seconds: 1.0e308}\n", "server.request_timeout_seconds"),
    "empty profile name": ("profiles:\n  '': {}\n", "profiles"),
    "profile name with a newline": ('profiles:\n  "a\\nb": {}\n', "profiles"),
    "a change of zero": ("units: survey\ntargets:\n  power: {change: 0}\n", "targets.power"),
    "a 40k-character system prompt": ("system_prompt: " + "x" * 40_000 + "\n", "system_prompt"),
    # found by the hostile-input sweep (scripts/hostile_sweep.py): accepted before
    "a number as a switch": ("audit: {enabled: 1}\n", "audit.enabled"),
    "a blank bundle": ("bundle: ' '\n", "bundle"),
    "a queue of 2**64": ("server: {max_queue: 18446744073709551616}\n", "server.max_queue"),
    "a denormal timeout": ("server: {request_timeout_seconds: 1.0e-320}\n", "server.request_timeout_seconds"),
    "a denormal audit interval": ("audit: {interval_seconds: 1.0e-320}\n", "audit.interval_seconds"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_a_bad_number_in_guard_yaml_is_a_clear_error(tmp_path: Path, case: str) -> None:
    text, field = CONFIG_CASES[case]
    path = tmp_path / "guard.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_guard_config(path)
    assert f"{path}:" in str(caught.value) and field in str(caught.value), str(caught.value)


HEADER = "questionnaire,item,value,agreement,question\n"
ROWS = (
    'PVQ,"I like to be in charge.",Power,1,"Do you like to be in charge?"\n'
    'PVQ,"I want wealth.",Power,1,"Do you want wealth?"\n'
    'PVQ,"I help my friends.",Benevolence,1,"Do you help your friends?"\n'
    'PVQ,"I care for others.",Benevolence,-1,"Do you care for others?"\n'
)

# name -> (file bytes, line, field, message): each must be one located problem with a fix
CSV_CASES: dict[str, tuple[bytes, int, str, str]] = {
    "short row": ((HEADER + "PVQ,I like it\n" + ROWS).encode(), 2, "row", "has 2 fields, the header has 5"),
    "long row": ((HEADER + ROWS + 'PVQ,"I rule.",Power,1,"Do you rule?",extra\n').encode(), 6, "row", "has 6 fields"),
    "item under 3 characters": ((HEADER + 'PVQ,Hi,Power,1,"Do you?"\n' + ROWS).encode(), 2, "item", "2 characters"),
    "Latin-1 file": ((HEADER + ROWS + 'PVQ,"I like cafés.",Power,1,"Do you?"\n').encode("latin-1"), 6, "", "not UTF-8"),
    "field over 128 KB": (
        (HEADER + 'PVQ,"I ' + "x" * 140000 + '",Power,1,"Do you?"\n' + ROWS).encode(),
        2,
        "",
        "field larger than field limit",
    ),
    "item over 1000 characters": (
        (HEADER + 'PVQ,"I ' + "y" * 10000 + '",Power,1,"Do you?"\n' + ROWS).encode(),
        2,
        "item",
        "10002 characters",
    ),
    "agreement 1.7": ((HEADER + ROWS.replace("Power,1,", "Power,1.7,", 1)).encode(), 2, "agreement", "'1.7'"),
    "agreement inf": ((HEADER + ROWS.replace("Power,1,", "Power,inf,", 1)).encode(), 2, "agreement", "'inf'"),
    "two spellings merge": (
        (HEADER + ROWS + 'PVQ,"I rule.",POWER!,1,"Do you rule?"\n').encode(),
        6,
        "value",
        "both become the value name 'power'",
    ),
    "duplicate row": ((HEADER + ROWS + ROWS.splitlines(keepends=True)[0]).encode(), 6, "item", "repeats line 2"),
    "value named like an id column": (
        (
            HEADER + ROWS + 'PVQ,"I adapt.",condition,1,"Do you adapt?"\n'
            'PVQ,"I adapt a lot.",condition,1,"Do you adapt a lot?"\n'
        ).encode(),
        6,
        "value",
        "column name of the score matrix",
    ),
}


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_a_bad_valuebench_csv_is_a_located_error(tmp_path: Path, case: str) -> None:
    from causalguard.values import load_inventory

    data, line, field, message = CSV_CASES[case]
    path = tmp_path / "inventory.csv"
    path.write_bytes(HEADER.encode() + ROWS.encode())
    assert load_inventory(path).names == ["power", "benevolence"]  # the clean file loads
    path.write_bytes(data)
    with pytest.raises(ConfigError) as caught:
        load_inventory(path)
    text, problem = str(caught.value), caught.value.problems[0]
    assert problem.line == line and problem.field == field and message in text and "fix:" in text, text


def test_a_byte_order_mark_is_read_as_utf8(tmp_path: Path) -> None:
    from causalguard.values import load_inventory

    path = tmp_path / "inventory.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (HEADER + ROWS).encode())
    assert load_inventory(path).names == ["power", "benevolence"]


ROLE_CASES: dict[str, tuple[str, int, str, str]] = {
    "id of the baseline": ("roles:\n  - {id: baseline, description: 'a clerk'}\n", 2, "roles[0].id", "built-in"),
    "id of a persona": ("roles:\n  - {id: 'persona:000', description: 'a clerk'}\n", 2, "roles[0].id", "built-in"),
    "id of a value role": (
        "roles:\n  - {id: ok, description: 'a clerk'}\n  - {id: 'value:power:inclined', description: 'a clerk'}\n",
        3,
        "roles[1].id",
        "built-in",
    ),
    "duplicate id": (
        "roles:\n  - {id: a, description: 'a clerk'}\n\n  - {id: a, description: 'a monk'}\n",
        4,
        "roles[1].id",
        "first on line 2",
    ),
    "description under 3 characters": (
        "roles:\n  - {id: a, description: 'Hi'}\n",
        2,
        "roles[0].description",
        "at least 3",
    ),
    "system prompt over 4000 characters": (
        "roles:\n  - {id: a, description: 'a clerk', system_prompt: '" + "z" * 5000 + "'}\n",
        2,
        "roles[0].system_prompt",
        "at most 4000",
    ),
}


@pytest.mark.parametrize("case", list(ROLE_CASES))
def test_a_bad_roles_file_is_a_located_error(tmp_path: Path, case: str) -> None:
    from causalguard.roles import load_roles_file

    text, line, field, message = ROLE_CASES[case]
    path = tmp_path / "roles.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_roles_file(path)
    problem = caught.value.problems[0]
    assert problem.line == line and problem.field == field and message in str(caught.value), str(caught.value)
    assert "fix:" in str(caught.value)


HINT_CASES: dict[str, tuple[str, str, str]] = {
    "targets: null": ("targets: null\n", "targets", "write a mapping"),
    "a top-level list": ("- a\n- b\n", "(top level)", "top level is a mapping of GuardConfig fields"),
    "a word for a number": ("limits: {max_levers: many}\n", "limits.max_levers", "write a whole number"),
    "out of range": ("limits: {max_levers: 0}\n", "limits.max_levers", "write a number at least 1"),
    "not a boolean": ("allow_client_interventions: maybe\n", "allow_client_interventions", "true or false"),
    "NaN": ("targets:\n  power: {change: .nan}\n", "targets.power.change", "finite number"),
}


@pytest.mark.parametrize("case", list(HINT_CASES))
def test_every_config_error_says_how_to_fix_it(tmp_path: Path, case: str) -> None:
    text, field, hint = HINT_CASES[case]
    path = tmp_path / "guard.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_guard_config(path)
    problem = caught.value.problems[0]
    assert problem.field == field and problem.hint is not None and hint in problem.hint, str(caught.value)


def test_an_oversized_yaml_is_refused_before_parsing(tmp_path: Path) -> None:
    from causalguard.yaml_files import MAX_YAML_BYTES

    path = tmp_path / "guard.yaml"
    path.write_text("# padding\n" * (MAX_YAML_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match="byte limit for a YAML file"):
        read_guard_config(path)


MORE_BUNDLE_CASES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    # found by the hostile-input sweep (scripts/hostile_sweep.py): accepted before
    "a strength of false": (
        lambda f: _json(f, "catalog.json", lambda d: d["levers"][0].update(strength=False)),
        "catalog.json",
        "expected a number, got true/false",
    ),
    "a lever id with a newline": (
        lambda f: _json(f, "catalog.json", lambda d: d["levers"][0].update(id="a\nb")),
        "catalog.json",
        "levers[0].id",
    ),
    "a layer on a role lever": (
        lambda f: _json(f, "catalog.json", lambda d: d["levers"][0].update(layer=0)),
        "catalog.json",
        "only vector and pair levers have a layer",
    ),
    "2**64 replies": (
        lambda f: _json(f, "catalog.json", lambda d: d["levers"][0]["replies"].update(n=2**64)),
        "catalog.json",
        "levers[0].replies.n",
    ),
    "SAE feature out of range": (
        lambda f: _json(
            f,
            "catalog.json",
            lambda d: next(lever for lever in d["levers"] if lever["kind"] == "sae").update(feature=10**6),
        ),
        "catalog.json",
        "but the SAE has 4096 features",
    ),
    "a value missing from a lever's effects": (
        lambda f: _json(f, "catalog.json", lambda d: d["levers"][0]["effects"].pop(d["dimensions"][1])),
        "catalog.json",
        "missing stimulation",
    ),
    "a value missing from a reply effect": (
        lambda f: _json(f, "catalog.json", lambda d: d["levers"][0]["replies"]["effects"].pop(d["dimensions"][1])),
        "catalog.json",
        "replies.effects",
    ),
    "a lever listed twice": (
        lambda f: _json(f, "catalog.json", lambda d: d["levers"].append(d["levers"][0])),
        "catalog.json",
        "listed twice",
    ),
}


@pytest.mark.parametrize("case", list(MORE_BUNDLE_CASES))
def test_a_catalog_that_does_not_fit_its_bundle_is_refused_at_load(tmp_path: Path, case: str) -> None:
    damage, file, message = MORE_BUNDLE_CASES[case]
    folder = _bundle_copy(tmp_path)
    shutil.copytree(SHIPPED / "sae", folder / "sae")
    seal_bundle(folder)
    load_bundle(folder)
    damage(folder)
    _resealed(folder)
    with pytest.raises(ConfigError) as caught:
        load_bundle(folder)
    assert file in str(caught.value) and message in str(caught.value), str(caught.value)


@pytest.mark.parametrize("damage", ["truncated weights", "cfg.json not JSON", "cfg.json without d_sae"])
def test_a_damaged_sae_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    from causalguard.adapters.hf.sae import load_sae
    from causalguard.models import load_model

    folder = tmp_path / "sae"
    shutil.copytree(SHIPPED / "sae", folder)
    if damage == "truncated weights":
        weights = folder / "sae_weights.safetensors"
        weights.write_bytes(weights.read_bytes()[:5000])
    elif damage == "cfg.json not JSON":
        (folder / "cfg.json").write_text("{not json")
    else:
        _json(folder, "cfg.json", lambda d: d.pop("d_sae"))
    with pytest.raises(ConfigError) as caught:
        load_sae(folder, load_model("smollm2-135m-instruct"))
    assert str(folder) in str(caught.value) and "fix:" in str(caught.value), str(caught.value)


def test_a_corrupt_run_record_is_a_clear_error_and_keeps_the_answers(tmp_path: Path) -> None:
    from causalguard.graphs.survey.results import load_survey

    (tmp_path / "run.json").write_text("{broken")
    (tmp_path / "answers.csv").write_text("kept\n")
    with pytest.raises(ConfigError, match="unreadable run record") as caught:
        load_survey(tmp_path)
    assert "--restart" in str(caught.value) and (tmp_path / "answers.csv").read_text() == "kept\n"


def test_a_file_the_machine_refuses_is_one_line_naming_it(tmp_path: Path) -> None:
    import errno
    import subprocess
    import sys

    from causalguard.cli import os_error_line

    line = os_error_line(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "answers.csv")))
    assert line.startswith(str(tmp_path / "answers.csv")) and "resumes" in line and "\n" not in line
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "causalguard.cli",
            "survey",
            "--out",
            str(blocker / "out"),
            "--dimensions",
            "power,benevolence",
            "--personas",
            "1",
            "--no-value-roles",
            "--no-anchors",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"error: {blocker / 'out'}: Not a directory" in result.stderr, result.stderr


def test_levers_show_renders_from_catalog_json_without_catalog_md(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from causalguard.cli import app

    folder = _bundle_copy(tmp_path)
    assert not (folder / "CATALOG.md").exists()
    result = CliRunner().invoke(app, ["levers", "show", str(folder)])
    assert result.exit_code == 0 and "role:stimulation:+:reply" in result.output, result.output


def test_a_prompt_slice_past_the_end_is_a_clear_error() -> None:
    from causalguard.judging.prompt_sets import load_prompts

    test = load_prompts().split("test")
    assert [p.id for p in test.balanced_slice(20, 10)] == [p.id for p in test.balanced(30)][20:]
    with pytest.raises(ConfigError) as caught:
        test.balanced_slice(len(test) - 20, 40)
    assert "--prompt-offset" in str(caught.value) and "fix: lower --prompts or --prompt-offset" in str(caught.value)


def test_an_unset_upstream_key_variable_names_the_config_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from causalguard.config.loading import upstream_api_key

    monkeypatch.delenv("CG_TEST_UPSTREAM_KEY", raising=False)
    path = tmp_path / "guard.yaml"
    path.write_text("upstream:\n  base_url: http://127.0.0.1:9/v1\n  model: m\n  api_key_env: CG_TEST_UPSTREAM_KEY\n")
    sourced = read_guard_config(path)
    with pytest.raises(ConfigError) as caught:
        upstream_api_key(sourced)
    assert f"{path}:4: upstream.api_key_env" in str(caught.value) and "CG_TEST_UPSTREAM_KEY" in str(caught.value)
    monkeypatch.setenv("CG_TEST_UPSTREAM_KEY", "s3cret")
    assert upstream_api_key(sourced) == "s3cret"
    path.write_text("upstream:\n  base_url: ftp://nowhere\n  model: m\n")
    with pytest.raises(ConfigError, match=r"upstream\.base_url"):
        read_guard_config(path)


def test_serve_rejects_an_unknown_log_format() -> None:
    from typer.testing import CliRunner

    from causalguard.cli import app

    example = Path(__file__).resolve().parent.parent / "deploy" / "guard.yaml"
    result = CliRunner().invoke(app, ["serve", "--config", str(example), "--log-format", "xml"])
    assert result.exit_code != 0 and "expected text or json" in result.output


def test_a_fifo_as_config_is_refused_without_blocking(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "guard.yaml"
    os.mkfifo(fifo)  # no writer: reading it would block forever
    with pytest.raises(ConfigError, match="not a regular file"):
        read_guard_config(fifo)


def test_a_fifo_as_a_prompts_or_keys_file_is_refused_without_blocking(tmp_path: Path) -> None:
    """Every user file goes through the one bounded reader (text_files.read_text_file): a prompts JSONL
    given as a pipe blocked before it did."""
    import os

    from causalguard.judging.prompt_sets import load_prompts

    fifo = tmp_path / "prompts.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_prompts(fifo)
    (tmp_path / "guard.yaml").write_text("server: {api_keys_file: prompts.jsonl}\n")
    with pytest.raises(ConfigError, match="not a regular file"):
        read_guard_config(tmp_path / "guard.yaml")
    (tmp_path / "big.jsonl").write_bytes(b"x" * 10)
    from causalguard.text_files import read_text_file

    with pytest.raises(ConfigError, match="over the 5-byte limit for a JSONL file"):
        read_text_file(tmp_path / "big.jsonl", max_bytes=5, kind="a JSONL file", too_large_hint="split it")


@pytest.mark.parametrize(
    "text",
    [
        # ten levels of ten aliases: 10**10 values once expanded, 600 bytes on disk
        "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 10)}]\n" for k in range(1, 10))
        + "model: *a9\n",
        "model: &m [*m]\n",
    ],
)
def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path: Path, text: str) -> None:
    import time

    path = tmp_path / "guard.yaml"
    path.write_text(text)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="alias"):
        read_guard_config(path)
    assert time.perf_counter() - started < 5


def test_a_bad_exclude_pattern_and_log_level_are_clear_errors(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from causalguard.cli import app

    csv_file = tmp_path / "m.csv"
    csv_file.write_text("condition,a,b\nr0,0.1,0.2\n")
    result = CliRunner().invoke(app, ["graph", "build", str(csv_file), "--out", str(tmp_path / "b"), "--exclude", "("])
    assert (
        result.exit_code != 0 and "--exclude" in str(result.exception) and "regular expression" in str(result.exception)
    )
    result = CliRunner().invoke(app, ["serve", "--config", "deploy/guard.yaml", "--log-level", "nonsense"])
    assert result.exit_code == 2 and "--log-level" in result.output


def test_graph_predict_refuses_a_value_given_twice() -> None:
    from typer.testing import CliRunner

    from causalguard.cli import app

    shipped = "graphs/causalguard/graphs/gemma3-270m"
    result = CliRunner().invoke(app, ["graph", "predict", shipped, "--do", "power=1", "--do", "power=2"])
    assert result.exit_code == 2 and "twice" in result.output
    assert CliRunner().invoke(app, ["graph", "predict", shipped, "--do", "power=0.1"]).exit_code == 0


def test_an_unknown_scoring_method_is_named_before_any_model_loads() -> None:
    from typer.testing import CliRunner

    from causalguard.cli import app

    result = CliRunner().invoke(app, ["methods", "compare", "--methods", "yesno,magic", "--out", "/nonexistent/x"])
    assert result.exit_code == 2 and "magic" in result.output and "--methods" in result.output


JSONL_CASES = {
    "a key twice in one object": (
        '{"id": "a1", "text": "Any ideas?", "id": "a2", "values": ["power"], "split": "dev"}',
        "id",
        "given twice",
    ),
    "nested too deeply": ('{"id": "a1", "text": ' + "[" * 100_000 + "]" * 100_000 + "}", "", "nested too deeply"),
}


@pytest.mark.parametrize("case", list(JSONL_CASES))
def test_a_bad_jsonl_object_is_a_located_error(tmp_path: Path, case: str) -> None:
    from causalguard.judging.prompt_sets import load_prompts

    text, field, message = JSONL_CASES[case]
    good = '{"id": "ok1", "text": "What should I cook tonight?", "values": ["hedonism"], "split": "dev"}'
    path = tmp_path / "prompts.jsonl"
    path.write_text(good + "\n" + text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_prompts(path)
    problem = caught.value.problems[0]
    assert problem.path == str(path) and problem.line == 2 and problem.field == field
    assert message in str(caught.value) and "fix:" in str(caught.value)


@pytest.mark.parametrize(
    ("damage", "line", "message"),
    [
        (b"condition,power,benevolence\np0,0.1,0.2\np1,\xff\xfe,0.3\n", 3, "not UTF-8 text (byte 42)"),
        (b"condition,power,benevolence\np0,0.1,0.2\np1,0.2,0.3\np2,0\x00.1,0.4\n", 4, "a NUL byte"),
    ],
)
def test_a_damaged_score_matrix_is_a_located_error(tmp_path: Path, damage: bytes, line: int, message: str) -> None:
    from causalguard.graphs.causal.matrix import read_score_matrix

    path = tmp_path / "scores.csv"
    path.write_bytes(damage)
    with pytest.raises(ConfigError) as caught:
        read_score_matrix(path)
    assert caught.value.problems[0].line == line and message in str(caught.value), str(caught.value)


_INVENTORY = """name: t
dimensions:
- name: alpha
  definition: a thing
  items:
  - {id: a1, statement: I like alpha things., question: Do you like alpha things?, polarity: 1}
  - {id: a2, statement: Alpha bores me., question: Does alpha bore you?, polarity: -1}
- name: beta
  definition: b thing
  items:
  - {id: b1, statement: I like beta things., question: Do you like beta things?, polarity: 1}
  - {id: b2, statement: Beta bores me., question: Does beta bore you?, polarity: -1}
"""


@pytest.mark.parametrize(
    ("old", "new", "where", "message"),
    [
        ("polarity: 1}", "polarity: true}", "polarity", "the number 1 or -1"),
        ("Alpha bores me.", "I like alpha things.", "dimensions", "repeats the statement"),
        ("Beta bores me.", "i like  ALPHA things.", "dimensions", "repeats the statement"),
        ("id: b2", "id: ''", "id", "at least 1"),
        ("name: t\n", "name: ' '\n", "name", "pattern"),
        # found by the hostile-input sweep: a name read back as a path, and a 70,000-character value name
        ("name: t\n", "name: ../../etc/passwd\n", "name", "is not a name"),
        ("- name: alpha", "- name: " + "a" * 70, "name", "at most 64"),
    ],
)
def test_an_inventory_that_means_nothing_is_a_located_error(
    tmp_path: Path, old: str, new: str, where: str, message: str
) -> None:
    from causalguard.values import load_inventory

    path = tmp_path / "inv.yaml"
    path.write_text(_INVENTORY.replace(old, new, 1))
    with pytest.raises(ConfigError, match=message) as caught:
        load_inventory(str(path))
    assert "inv.yaml:" in str(caught.value) and where in str(caught.value)


def test_an_unbalanced_dimension_is_a_warning_in_the_quality_report() -> None:
    from causalguard.graphs.survey.quality_report import render_markdown
    from causalguard.values.inventory import Inventory

    inventory = Inventory.model_validate(
        {
            "name": "t",
            "dimensions": [
                {
                    "name": "alpha",
                    "definition": "a thing",
                    "items": [
                        {"id": "a1", "statement": "I like alpha.", "question": "Alpha?", "polarity": 1},
                        {"id": "a2", "statement": "Alpha is great.", "question": "Great?", "polarity": 1},
                    ],
                }
            ],
        }
    )
    assert inventory.unbalanced_dimensions() == ["alpha"]
    report = {
        "model": {"name": "m"},
        "method": {"name": "statement"},
        "unbalanced_dimensions": ["alpha"],
        "summary": {
            "conditions": 3,
            "median_alpha": 0.9,
            "median_split_half": 0.9,
            "value_role_share_met": None,
            "value_role_on_target_top1": None,
            "anchor_share_met": None,
        },
        "reliability": {},
        "value_roles": {},
        "anchors": {"per_dimension": {}},
    }
    text = render_markdown(report)
    assert "**warning**" in text and "alpha" in text and "acquiescence" in text


def test_a_role_may_not_take_a_shipped_anchors_id(tmp_path: Path) -> None:
    from causalguard.roles import load_roles_file

    path = tmp_path / "roles.yaml"
    path.write_text("roles:\n  - id: anchor:monk\n    description: a monk who lives alone\n")
    with pytest.raises(ConfigError, match="anchor") as caught:
        load_roles_file(path)
    assert "roles.yaml:2" in str(caught.value)


def test_a_whitespace_prompt_and_an_empty_model_are_located_errors(tmp_path: Path) -> None:
    from causalguard.judging.prompt_sets import load_prompts

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        '{"id": "p1", "text": "How do I rest?", "values": []}\n{"id": "p2", "text": "  \\t ", "values": []}\n'
    )
    with pytest.raises(ConfigError, match=r"prompts\.jsonl:2.*text"):
        load_prompts(prompts)
    for model in ('""', "' '"):
        config = tmp_path / "guard.yaml"
        config.write_text(f"model: {model}\n")
        with pytest.raises(ConfigError, match=r"guard\.yaml:1.*model"):
            read_guard_config(config)


def test_another_models_bundle_is_refused_before_the_model_loads(tmp_path: Path) -> None:
    import time

    from causalguard.runtime.value_guard import ValueGuard

    config = tmp_path / "guard.yaml"
    config.write_text(f"model: gemma3-270m\nbundle: {shipped_bundle_dir('smollm2-135m-instruct')}\n")
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"guard\.yaml:2: bundle.*built for smollm2-135m-instruct"):
        ValueGuard.from_config(config)
    assert time.monotonic() - started < 5  # no minute-long model load first


@pytest.mark.parametrize(
    "args",
    [
        ["survey", "--seed", str(2**70)],
        ["graph", "build", "x.csv", "--out", "o", "--seed", "-1"],
        ["sae", "train", "--out", "o", "--layer", "-1"],
    ],
)
def test_out_of_range_seeds_and_layers_are_refused_by_the_cli(args: list[str]) -> None:
    from typer.testing import CliRunner

    from causalguard.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and ("--seed" in result.output or "--layer" in result.output), result.output
