"""Reading YAML safely while keeping line numbers, and turning pydantic errors into located problems.

Data is parsed with ``yaml.safe_load`` (never a full loader). Line numbers come from a second,
construction-free pass (``yaml.compose`` with the safe loader), which only builds the node tree.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from causalguard.errors import ConfigError, Problem

ModelT = TypeVar("ModelT", bound=BaseModel)
MAX_YAML_BYTES = 8 * 1024 * 1024


def duplicate_keys(node: yaml.Node | None) -> list[tuple[str, int, int]]:
    """Every key that appears twice in one mapping: (key, first line, second line). YAML loaders keep
    the last silently, which would drop the first block without a word."""
    found: list[tuple[str, int, int]] = []
    stack = [node] if node is not None else []
    while stack:
        current = stack.pop()
        if isinstance(current, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in current.value:
                if isinstance(key, yaml.ScalarNode):
                    line = key.start_mark.line + 1
                    if key.value in seen:
                        found.append((str(key.value), seen[key.value], line))
                    else:
                        seen[key.value] = line
                stack.append(value)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
    return sorted(found, key=lambda f: f[2])


def read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Parse ``path`` with ``yaml.safe_load``; also return its node tree for line look-ups. Duplicate
    keys and files over ``MAX_YAML_BYTES`` are errors."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ConfigError.single(str(path), "file not found", hint="check the path") from None
    if path.is_dir():
        raise ConfigError.single(str(path), "is a folder, not a YAML file", hint="give the path of the file")
    if size > MAX_YAML_BYTES:
        raise ConfigError.single(str(path), f"file is {size} bytes, over the {MAX_YAML_BYTES}-byte limit for YAML",
                                 hint="check that this is the right file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError.single(str(path), "file not found", hint="check the path") from None
    except UnicodeDecodeError as exc:
        raise ConfigError.single(str(path), f"not UTF-8 text ({exc.reason})", hint="save it as UTF-8") from None
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError.single(
            str(path), f"invalid YAML: {problem}", line=line, hint="fix the YAML syntax at that line"
        ) from None
    duplicates = duplicate_keys(node)
    if duplicates:
        raise ConfigError([Problem(str(path), second, key, f"duplicate key '{key}' (first on line {first})",
                                   "merge the two entries into one") for key, first, second in duplicates])
    return data, node


def line_of(node: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """The 1-based line of the value at ``loc`` in a composed YAML tree (nearest parent if absent)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for depth, key in enumerate(loc):
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == key:
                    child = value_node
                    line = key_node.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
            child = node.value[key]
            line = child.start_mark.line + 1
        if child is None:
            return line
        node = child
        last = depth == len(loc) - 1
        if not isinstance(node, yaml.ScalarNode) and not (last and isinstance(key, str)):
            line = node.start_mark.line + 1  # a mapping key's own line is kept for the last element
    return line


def format_loc(loc: Sequence[int | str]) -> str:
    """``("dimensions", 2, "items", 0, "polarity")`` -> ``dimensions[2].items[0].polarity``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(model: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The pydantic model class that owns the last element of ``loc`` (to suggest field names)."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None or isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _inner_model(field.annotation)
    return current


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def problems_from_validation(
    exc: ValidationError, model: type[BaseModel], path: str, node: yaml.Node | None
) -> list[Problem]:
    """Locate each pydantic error in the YAML file and add a fix suggestion where one is known."""
    problems = []
    for error in exc.errors():
        loc = [p for p in error["loc"] if isinstance(p, int | str)]
        hint: str | None = None
        if error["type"] == "extra_forbidden":
            owner = _model_at(model, loc)
            known = sorted(owner.model_fields) if owner else []
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known fields: {', '.join(known)}"
            message = "unknown field"
        elif error["type"] == "missing":
            message = "required field is missing"
            hint = f"add '{loc[-1]}'"
        else:
            message = error["msg"]
            ctx = error.get("ctx") or {}
            if "expected" in ctx:
                hint = f"use one of {ctx['expected']}"
        problems.append(Problem(path, line_of(node, loc), format_loc(loc), message, hint))
    return problems


def validate_yaml_file(model: type[ModelT], path: Path) -> ModelT:
    """Load ``path`` and validate it as ``model``; raise ``ConfigError`` naming file, line and field."""
    return validate_yaml_file_with_node(model, path)[0]


def validate_yaml_file_with_node(model: type[ModelT], path: Path) -> tuple[ModelT, yaml.Node | None]:
    """``validate_yaml_file`` plus the file's YAML node tree (for later line numbers), parsed once."""
    data, node = read_yaml(path)
    if data is None:
        raise ConfigError.single(str(path), "the file is empty", hint=f"see the {model.__name__} format")
    try:
        return model.model_validate(data), node
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(exc, model, str(path), node)) from None
