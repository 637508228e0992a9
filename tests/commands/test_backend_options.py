"""``--backend`` and ``--ray``: the pool spec is parsed with errors that name the pair and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from causalguard.commands.options import ray_options, reply_backend, survey_backend
from tests.repo_paths import ROOT


def test_the_ray_spec_sets_the_pool() -> None:
    options = ray_options("actors=4, cpus=2,gpus=0.5,threads=2,restarts=1,address=auto")
    assert (
        options.actors,
        options.num_cpus,
        options.num_gpus,
        options.threads,
        options.max_restarts,
        options.address,
    ) == (4, 2.0, 0.5, 2, 1, "auto")
    assert ray_options(None).actors == 2 and ray_options("").address is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("actors", "is not one of actors=..."),
        ("workers=3", "is not one of"),
        ("actors=two", "actors must be a number"),
        ("actors=0", "actors must be at least 1"),
        ("threads=0", "threads must be at least 1"),
    ],
)
def test_a_bad_ray_spec_names_the_pair(spec: str, message: str) -> None:
    with pytest.raises(typer.BadParameter, match=message):
        ray_options(spec)


def test_ray_options_without_the_ray_backend_are_an_error() -> None:
    with pytest.raises(typer.BadParameter, match="add --backend ray"):
        survey_backend("local", "actors=2")
    assert survey_backend("local", None).name == "local"
    assert reply_backend("ray", "actors=3").name == "ray"


def test_levers_interventions_names_an_unknown_lever_before_loading_the_model(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from causalguard.cli import app

    shipped = ROOT / "graphs/causalguard/graphs/smollm2-135m-instruct"
    result = CliRunner().invoke(
        app,
        [
            "levers",
            "interventions",
            "--bundle",
            str(shipped),
            "--out",
            str(tmp_path / "iv"),
            "--levers",
            "role:stimulation:+:reply,nope",
        ],
    )
    assert result.exit_code == 2 and "not in the catalog: nope" in result.output
    result = CliRunner().invoke(
        app, ["levers", "interventions", "--bundle", str(shipped), "--out", str(tmp_path / "iv"), "--ray", "actors=2"]
    )
    assert result.exit_code == 2 and "add --backend ray" in result.output
