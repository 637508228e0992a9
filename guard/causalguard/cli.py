"""The ``causalguard`` command line: one sub-command per stage (see ``causalguard --help``)."""

from __future__ import annotations

import errno
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


_OS_HINTS = {
    errno.ENOSPC: "free disk space, then rerun the same command: it resumes, nothing written so far is lost",
    errno.EDQUOT: "free disk space, then rerun the same command: it resumes, nothing written so far is lost",
    errno.EROFS: "choose a writable folder (--out / --work)",
    errno.EACCES: "choose a folder you may write to (--out / --work), or fix its permissions",
    errno.EPERM: "choose a folder you may write to (--out / --work), or fix its permissions",
    errno.ENOENT: "check the path: a parent folder does not exist",
    errno.EISDIR: "give a file path, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}


def os_error_line(exc: OSError) -> str:
    """``OSError`` as one line: the path, what the system said, and a fix."""
    where = exc.filename if exc.filename is not None else "writing a file"
    what = exc.strerror or str(exc)
    hint = _OS_HINTS.get(exc.errno or 0, "check the path and the machine's disk")
    return f"{where}: {what} (errno {exc.errno}); fix: {hint}"


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except CausalguardError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:  # the machine refused a file: one line naming it, with what to do
        typer.echo(f"error: {os_error_line(exc)}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted; rerun the same command to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
