"""``causalguard pipeline``: the main job, survey then graph bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from causalguard.commands.graph import graph_build_command
from causalguard.commands.options import (
    BackendOpt,
    ModelOpt,
    RayOpt,
)
from causalguard.commands.survey import survey_command


def pipeline_command(
    out: Annotated[Path, typer.Option(help="Output folder for every stage.")] = Path("runs/default"),
    model: ModelOpt = "smollm2-135m-instruct",
    personas: Annotated[int, typer.Option(min=0, help="Synthetic personas in the survey.")] = 30,
    method: Annotated[str, typer.Option(help="Scoring method: auto (the model's stored choice) or a name.")] = "auto",
    bundle_dir: Annotated[Path | None, typer.Option(help="Where to write the bundle (default: OUT/bundle).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    backend: BackendOpt = "local",
    ray: RayOpt = None,
) -> None:
    """The main job: survey the model (personas + value roles + anchors), then build its graph bundle."""
    survey_command(
        out=out / "survey", model=model, personas=personas, method=method, quiet=quiet, backend=backend, ray=ray
    )
    graph_build_command(source=out / "survey", out=bundle_dir or out / "bundle")
