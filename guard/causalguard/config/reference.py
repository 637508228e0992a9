"""Generate the operator config reference (``docs/guard-config.md``) from the schema itself.

    .venv/bin/python -m causalguard.config.reference > docs/guard-config.md

A test checks the committed file matches, so the reference cannot drift from the code.
"""

from __future__ import annotations

import sys
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from causalguard.config.schema import GuardConfig, ProfileSpec, TargetSpec


def _type_name(annotation: Any) -> str:
    text = repr(annotation) if not isinstance(annotation, type) else annotation.__name__
    return text.replace("typing.", "").replace("causalguard.config.schema.", "").replace("|", "\\|")


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        return "{}" if isinstance(value, dict) else ("see below" if isinstance(value, BaseModel) else repr(value))
    return "required" if field.default is PydanticUndefined else f"`{field.default!r}`"


def _section(title: str, model: type[BaseModel], prefix: str) -> list[str]:
    lines = [
        f"## {title}",
        "",
        (model.__doc__ or "").strip().splitlines()[0],
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for name, field in model.model_fields.items():
        lines.append(
            f"| `{prefix}{name}` | `{_type_name(field.annotation)}` | {_default(field)} | {field.description or ''} |"
        )
    return [*lines, ""]


def render_reference() -> str:
    lines = [
        "# Operator config reference (`guard.yaml`)",
        "",
        "Generated from `causalguard.config.schema` by `python -m causalguard.config.reference`; an annotated",
        "example is `deploy/guard.yaml`. Unknown keys are errors (with a did-you-mean); every error names the",
        "file, line and field. Value names must be values of the bundle's inventory.",
        "",
    ]
    lines += _section("Top level", GuardConfig, "")
    lines += _section("Targets (`targets.<value>`)", TargetSpec, "")
    lines += _section("Profiles (`profiles.<name>`)", ProfileSpec, "")
    for name, field in GuardConfig.model_fields.items():
        annotation = field.annotation
        optional = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(optional) == 1:  # `X | None`: the section of X
            annotation = optional[0]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines += _section(f"`{name}`", annotation, f"{name}.")
    protected = typing.get_args(GuardConfig.model_fields["protected"].annotation)[1]
    lines += _section("Protected values (`protected.<value>`)", protected, "")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_reference())
