"""Reading YAML safely while keeping line numbers, and turning pydantic errors into located problems.

Data is parsed with the safe loader only (never a full loader), once: the node tree is composed
(kept for line numbers and duplicate keys) and the data constructed from it by the safe constructor.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from causalguard.errors import ConfigError, Problem
from causalguard.text_files import read_text_file

ModelT = TypeVar("ModelT", bound=BaseModel)
MAX_YAML_BYTES = 2 * 1024 * 1024  # configs, inventories and roles files are kilobytes; 2 MB parse in about a second
MAX_EXPANDED_NODES = 200_000  # the document with every alias expanded: a "billion laughs" bomb is far beyond it


class AliasBombError(ValueError):
    """The YAML's aliases expand to more nodes than any config holds, or refer to themselves."""


def expanded_nodes(root: yaml.Node) -> int:
    """How many nodes the document holds with every alias expanded (shared nodes counted each time they are
    used), stopping past ``MAX_EXPANDED_NODES``; raises ``AliasBombError`` beyond it or for a recursive alias."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        if children_done:
            open_nodes.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[id(node)] > MAX_EXPANDED_NODES:
                raise AliasBombError(f"its aliases expand to over {MAX_EXPANDED_NODES} values")
            continue
        if id(node) in open_nodes:
            raise AliasBombError("an alias refers to the node that contains it")
        open_nodes.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in open_nodes:
                raise AliasBombError("an alias refers to the node that contains it")
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


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


def _parse_once(text: str) -> tuple[Any, yaml.Node | None]:
    """One pass: compose the node tree (kept for line numbers), then construct the data from it with the
    safe constructor (libyaml's when installed)."""
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            expanded_nodes(node)
        return (loader.construct_document(node) if node is not None else None), node
    finally:
        loader.dispose()


def read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Parse ``path`` with the safe loader; also return its node tree for line look-ups. Duplicate
    keys and files over ``MAX_YAML_BYTES`` are errors."""
    text = read_text_file(
        path, max_bytes=MAX_YAML_BYTES, kind="a YAML file", too_large_hint="check that this is the right file"
    )
    try:
        data, node = _parse_once(text)
    except AliasBombError as exc:
        raise ConfigError.single(
            str(path), f"refused: {exc}", hint="write the values out instead of through nested aliases"
        ) from None
    except RecursionError:
        raise ConfigError.single(str(path), "nested too deeply", hint="flatten the YAML") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError.single(
            str(path), f"invalid YAML: {problem}", line=line, hint="fix the YAML syntax at that line"
        ) from None
    duplicates = duplicate_keys(node)
    if duplicates:
        raise ConfigError(
            [
                Problem(
                    str(path),
                    second,
                    key,
                    f"duplicate key '{key}' (first on line {first})",
                    "merge the two entries into one",
                )
                for key, first, second in duplicates
            ]
        )
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
        top = False
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
            message = error["msg"].removeprefix("Value error, ")
            message, _, fix = message.partition("; fix: ")  # validators may say how to fix what they refuse
            top = not loc and error["type"] in ("model_type", "dict_type", "model_attributes_type")
            hint = fix or _hint(error, model if top else None)
        problems.append(
            Problem(path, line_of(node, loc), format_loc(loc) or ("(top level)" if top else ""), message, hint)
        )
    return problems


_TYPE_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "string": "text",
    "bool": "true or false",
    "dict": "a mapping (key: value lines)",
    "list": "a list (- item lines)",
    "model": "a mapping",
}


def _hint(error: Any, top: type[BaseModel] | None) -> str | None:
    """A fix for one pydantic error: what to write instead."""
    kind, ctx, got = error["type"], error.get("ctx") or {}, error.get("input")
    if top is not None:
        return f"the file's top level is a mapping of {top.__name__} fields: {', '.join(sorted(top.model_fields))}"
    if "expected" in ctx:
        return f"use one of {ctx['expected']}"
    bounds = {
        "greater_than": "above",
        "greater_than_equal": "at least",
        "less_than": "below",
        "less_than_equal": "at most",
    }
    for name, word in bounds.items():
        if kind == name:
            limit = next(iter(ctx.values()), None)
            return f"write a number {word} {limit}"
    if kind == "finite_number":
        return "write a finite number (.nan and .inf are not allowed)"
    if kind in ("string_too_short", "too_short"):
        return f"write at least {ctx.get('min_length')} {'characters' if kind.startswith('string') else 'entries'}"
    if kind in ("string_too_long", "too_long"):
        return f"write at most {ctx.get('max_length')} {'characters' if kind.startswith('string') else 'entries'}"
    if kind == "string_pattern_mismatch":
        return f"match the pattern {ctx.get('pattern')}"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        wanted = _TYPE_WORDS.get(kind.split("_")[0], "another type")
        return f"write {wanted}" + (" (the value is empty: give one or delete the key)" if got is None else "")
    return None


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
