"""Load ``guard.yaml``: schema errors and unknown value names, each with file, line, field and a fix."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

import yaml
from causalguard.config.schema import GuardConfig
from causalguard.errors import ConfigError, Problem
from causalguard.yaml_files import format_loc, line_of, read_yaml, validate_yaml_file


def load_guard_config(path: Path, dimensions: Sequence[str] | None = None) -> GuardConfig:
    """Validate ``path``; with ``dimensions``, also check every value name it mentions."""
    config = validate_yaml_file(GuardConfig, path)
    if dimensions is not None:
        check_value_names(config, dimensions, path)
    return config


def _value_name_locations(config: GuardConfig) -> list[tuple[tuple[str | int, ...], str]]:
    found: list[tuple[tuple[str | int, ...], str]] = []
    found += [(("targets", name), name) for name in config.targets]
    found += [(("protected", name), name) for name in config.protected]
    for profile, spec in config.profiles.items():
        found += [(("profiles", profile, "targets", name), name) for name in spec.targets]
        found += [(("profiles", profile, "protected", name), name) for name in spec.protected]
    found += [(("audit", "values", k), name) for k, name in enumerate(config.audit.values or [])]
    return found


def check_value_names(config: GuardConfig, dimensions: Sequence[str], path: Path) -> None:
    """Raise ``ConfigError`` listing every value name that is not one of ``dimensions``."""
    node: yaml.Node | None = read_yaml(path)[1] if path.exists() else None
    problems = []
    for loc, name in _value_name_locations(config):
        if name in dimensions:
            continue
        close = difflib.get_close_matches(name, list(dimensions), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"values of this bundle: {', '.join(dimensions)}"
        problems.append(Problem(str(path), line_of(node, loc), format_loc(loc), f"unknown value '{name}'", hint))
    if "default" in config.profiles:
        problems.append(Problem(str(path), line_of(node, ("profiles", "default")), "profiles.default",
                                "'default' is the top-level profile", "rename the profile"))
    for profile, spec in [("default", config.profile()), *config.profiles.items()]:
        for name in set(spec.targets) & set(spec.protected):
            loc = ("protected", name) if profile == "default" else ("profiles", profile, "protected", name)
            problems.append(Problem(str(path), line_of(node, loc), format_loc(loc),
                                    f"'{name}' is both a target and protected", "remove it from one of them"))
    if problems:
        raise ConfigError(problems)
