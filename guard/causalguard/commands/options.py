"""Command-line options shared by several commands."""

from __future__ import annotations

from typing import Annotated

import typer

ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", help="Registry name (see 'causalguard models'), model folder, .gguf file or HF id."),
]
InventoryOpt = Annotated[
    str, typer.Option(help="Inventory: 'schwartz-basic-10' (shipped), a YAML file, or a ValueBench CSV.")
]
DimensionsOpt = Annotated[
    str | None, typer.Option(help="Comma-separated dimension names to keep, e.g. 'power,benevolence'.")
]
QuestionnaireOpt = Annotated[
    str | None, typer.Option(help="ValueBench CSV only: keep rows of this questionnaire.")
]


def split_list(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None
