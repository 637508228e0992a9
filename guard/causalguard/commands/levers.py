"""``causalguard levers``: measure what every lever does to every value, and show a bundle's catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

levers_app = typer.Typer(help="Levers (role prompts, SAE features): measure them into a bundle's catalog.",
                         no_args_is_help=True)


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise typer.BadParameter("strengths must be positive numbers, e.g. '0.25,0.5'")
    return values


@levers_app.command("measure")
def levers_measure_command(
    bundle: Annotated[Path, typer.Option(help="Bundle folder; catalog.json and CATALOG.md are written into it.")],
    sae: Annotated[Path | None, typer.Option(help="SAE folder (sae-lens format); default BUNDLE/sae.")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Registry name, folder, .gguf or HF id.")] = (
        "smollm2-135m-instruct"
    ),
    inventory: Annotated[str, typer.Option(help="Inventory the bundle was built with.")] = "schwartz-basic-10",
    work: Annotated[Path | None, typer.Option(help="Work folder (resumable); default BUNDLE/../.levers-work.")] = None,
    personas: Annotated[int, typer.Option(min=2, help="Held-out personas every lever is measured on.")] = 5,
    strengths: Annotated[str, typer.Option(help="SAE strengths, in units of the layer's residual norm.")] = "0.25,0.5",
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Propose role and SAE levers, measure each over held-out personas, write the catalog."""
    from causalguard.graphs.levers.build import CatalogSettings, build_levers_catalog
    from causalguard.graphs.levers.measure import MeasureSettings
    from causalguard.models import load_model
    from causalguard.values import load_inventory

    lm = load_model(model)
    from causalguard.artifacts import SAE_CONFIG, SAE_FOLDER

    default_sae = bundle / SAE_FOLDER
    sae_dir = sae if sae is not None else (default_sae if (default_sae / SAE_CONFIG).exists() else None)
    settings = CatalogSettings(strengths=_floats(strengths), measure=MeasureSettings(personas=personas))
    catalog = build_levers_catalog(lm, load_inventory(inventory), bundle, sae_dir,
                                   work or bundle.parent / f".levers-work-{bundle.name}", settings, progress=not quiet)
    typer.echo(f"{len(catalog.levers)} levers measured on {len(catalog.personas)} personas; "
               f"wrote {bundle / 'catalog.json'} and {bundle / 'CATALOG.md'}")


@levers_app.command("show")
def levers_show_command(bundle: Annotated[Path, typer.Argument(help="Bundle folder.")]) -> None:
    """Print a bundle's catalog report (rendered from catalog.json)."""
    from causalguard.graphs.levers.catalog import load_catalog, render_report

    catalog = load_catalog(bundle)
    if catalog is None:
        raise typer.BadParameter(f"{bundle} has no catalog.json; run 'causalguard levers measure --bundle {bundle}'")
    typer.echo(render_report(catalog))
