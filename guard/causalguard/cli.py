"""The ``causalguard`` command line: one sub-command per stage (see ``causalguard --help``)."""

from __future__ import annotations

import logging
import sys

import typer

from causalguard.commands.behaviour import behaviour_app
from causalguard.commands.graph import graph_app
from causalguard.commands.levers import levers_app
from causalguard.commands.models import models_command
from causalguard.commands.pipeline import pipeline_command
from causalguard.commands.sae import sae_app
from causalguard.commands.serve import plan_command, serve_command
from causalguard.commands.survey import methods_app, survey_command
from causalguard.errors import CausalguardError

app = typer.Typer(
    help="causalguard: measure, graph and steer the values of language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("models")(models_command)
app.command("survey")(survey_command)
app.add_typer(methods_app, name="methods")
app.add_typer(graph_app, name="graph")
app.add_typer(sae_app, name="sae")
app.add_typer(levers_app, name="levers")
app.add_typer(behaviour_app, name="behaviour")
app.command("pipeline")(pipeline_command)
app.command("serve")(serve_command)
app.command("plan")(plan_command)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except CausalguardError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted; rerun the same command to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
