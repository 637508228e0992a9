"""``causalguard models``: the embedded models and whether each is installed."""

from __future__ import annotations

import typer


def models_command() -> None:
    """List the embedded models and whether each is installed."""
    from causalguard.models.registry import DEFAULT_MODEL, EMBEDDED_MODELS

    for name, spec in EMBEDDED_MODELS.items():
        status = "installed" if spec.is_installed() else f"NOT INSTALLED: {spec.install_command}"
        marker = " (default)" if name == DEFAULT_MODEL else ""
        typer.echo(f"{name}{marker}\n    {spec.description}\n    {status}")
