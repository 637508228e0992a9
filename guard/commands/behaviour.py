"""``causalguard behaviour``: values as the chatbot says them (reply-level judge, reply quality, effects)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

behaviour_app = typer.Typer(help="Judge what the chatbot says: reply-level value judge, reply quality, lever "
                                 "effects on replies.", no_args_is_help=True)


@behaviour_app.command("report")
def behaviour_report_command(
    bundle: Annotated[Path, typer.Option(help="Bundle folder with catalog.json; judge.json, judge.safetensors, "
                                              "behaviour.json and BEHAVIOUR.md are written into it.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Registry name, folder, .gguf or HF id.")] = (
        "smollm2-135m-instruct"
    ),
    work: Annotated[Path | None, typer.Option(help="Reply run folder (resumable); default "
                                                   "BUNDLE/../.behaviour-work-<bundle name>.")] = None,
    prompts: Annotated[int, typer.Option(min=10, help="Dev prompts per condition (balanced over values).")] = 20,
    personas: Annotated[int, typer.Option(min=1, help="Personas (the default assistant prompt first).")] = 2,
    levers: Annotated[str | None, typer.Option(help="Comma-separated catalog lever ids; default all.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=8, max=512, help="Tokens per reply.")] = 64,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0, help="0 = greedy.")] = 0.0,
    seed: Annotated[int, typer.Option(min=0, help="Sampling seed (per-row generators).")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, max=256)] = 16,
    restart: Annotated[bool, typer.Option(help="Discard a previous reply run in the work folder.")] = False,
) -> None:
    """Fit and validate the judge, generate replies for every lever, and write the behaviour report."""
    from causalguard.graphs.behaviour.replies import ReplySettings
    from causalguard.graphs.behaviour.report import BEHAVIOUR_REPORT, ReportSettings, build_behaviour_report
    from causalguard.models import load_model

    lever_ids = tuple(x.strip() for x in levers.split(",") if x.strip()) if levers else None
    settings = ReportSettings(prompts=prompts, personas=personas, levers=lever_ids, batch_size=batch_size,
                              replies=ReplySettings(max_new_tokens, temperature, seed))
    lm = load_model(model)
    build_behaviour_report(lm, bundle, work or bundle.parent / f".behaviour-work-{bundle.name}", settings,
                           restart=restart, log=typer.echo)
    typer.echo(f"wrote {bundle / 'behaviour.json'} and {bundle / BEHAVIOUR_REPORT}")


@behaviour_app.command("show")
def behaviour_show_command(bundle: Annotated[Path, typer.Argument(help="Bundle folder.")]) -> None:
    """Print a bundle's behaviour report (rendered from behaviour.json)."""
    import json

    from causalguard.graphs.behaviour.report import BEHAVIOUR_FILE, render_behaviour

    path = bundle / BEHAVIOUR_FILE
    if not path.exists():
        raise typer.BadParameter(f"{bundle} has no {BEHAVIOUR_FILE}; run 'causalguard behaviour report "
                                 f"--bundle {bundle}'")
    typer.echo(render_behaviour(json.loads(path.read_text(encoding="utf-8"))))
