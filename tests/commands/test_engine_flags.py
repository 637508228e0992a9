"""``behaviour validate --engine-plain/--engine-steered`` refuses a bad or silent engine before any model
loads, naming the flag (the run itself is exercised in docs/levers.md's comparison)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from causalguard.cli import app
from causalguard.server.process import free_port
from tests.repo_paths import ROOT

CONFIG = str(ROOT / "docs/examples/stimulation-vector.yaml")


@pytest.mark.parametrize(
    ("flags", "hint", "message"),
    [
        (["--engine-plain", "notaurl"], "--engine-plain", "is not an http(s) URL"),
        (["--engine-plain", "http://127.0.0.1:{port}"], "--engine-plain", "no llama.cpp server answers"),
        (["--engine-steered", "http://127.0.0.1:{port}"], "--engine-steered", "give the unguarded engine too"),
        (["--engine-plain", "http://x", "--continuous"], "--engine-plain", "drop --continuous"),
    ],
)
def test_a_bad_engine_is_refused_before_any_model_loads(flags: list[str], hint: str, message: str) -> None:
    port = str(free_port())  # nothing listens there
    args = ["behaviour", "validate", "--config", CONFIG, *(f.replace("{port}", port) for f in flags)]
    result = CliRunner().invoke(app, args)
    flat = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and hint in flat and message in flat, flat
    assert "Loading weights" not in result.output
