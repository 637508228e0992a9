"""Load ``guard.yaml``: schema errors and unknown value names, each with file, line, field and a fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from causalguard.config.api_keys import with_listed_keys
from causalguard.config.schema import GuardConfig
from causalguard.errors import CausalguardError, ConfigError, Problem
from causalguard.yaml_files import format_loc, line_of, read_yaml, validate_yaml_file_with_node


@dataclass(frozen=True)
class SourcedConfig:
    """A validated ``guard.yaml`` with its source: the path and the YAML node tree (for line numbers).

    Read a file once (``read_guard_config``) and pass this object down; every later error about the
    config (unknown value names, infeasible profiles) points into the file that was actually read."""

    config: GuardConfig
    path: Path | None = None
    node: yaml.Node | None = None

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else "<config>"

    def line(self, field: str) -> int | None:
        """The line of ``field`` ('bundle', 'limits.max_levers') in the file read, if known."""
        return line_of(self.node, field.split(".")) if self.node is not None else None

    @contextmanager
    def blame(self, field: str) -> Iterator[None]:
        """Loading what ``field`` names (the model, the bundle) failed: re-raise the error pointing at the
        field's line of this config first, then the underlying file's own problems."""
        try:
            yield
        except ConfigError as exc:
            head = Problem(
                self.where,
                self.line(field),
                field,
                f"{getattr(self.config, field, '')!s} cannot be used (below)",
                hint=f"fix the files below or point '{field}' elsewhere",
            )
            raise ConfigError([head, *exc.problems]) from None
        except CausalguardError as exc:
            raise ConfigError.single(
                self.where,
                str(exc),
                line=self.line(field),
                field=field,
                hint=f"point '{field}' at something that loads",
            ) from None


def read_guard_config(source: SourcedConfig | GuardConfig | str | Path) -> SourcedConfig:
    """Parse and validate a config file once (or wrap an in-memory config), adding the client keys of
    ``server.api_keys_file`` and ``server.api_keys_env``."""
    if isinstance(source, SourcedConfig):
        return source
    if isinstance(source, GuardConfig):
        return SourcedConfig(with_listed_keys(source, None))
    path = Path(source)
    config, node = validate_yaml_file_with_node(GuardConfig, path)
    return SourcedConfig(with_listed_keys(config, path.parent), path, node)


def load_guard_config(path: Path, dimensions: Sequence[str] | None = None) -> GuardConfig:
    """Validate ``path``; with ``dimensions``, also check every value name it mentions."""
    sourced = read_guard_config(path)
    if dimensions is not None:
        check_value_names(sourced.config, dimensions, path, sourced.node)
    return sourced.config


def _value_name_locations(config: GuardConfig) -> list[tuple[tuple[str | int, ...], str]]:
    found: list[tuple[tuple[str | int, ...], str]] = []
    found += [(("targets", name), name) for name in config.targets]
    found += [(("protected", name), name) for name in config.protected]
    for profile, spec in config.profiles.items():
        found += [(("profiles", profile, "targets", name), name) for name in spec.targets]
        found += [(("profiles", profile, "protected", name), name) for name in spec.protected]
    found += [(("audit", "values", k), name) for k, name in enumerate(config.audit.values or [])]
    return found


def check_value_names(
    config: GuardConfig, dimensions: Sequence[str], path: Path, node: yaml.Node | None = None
) -> None:
    """Raise ``ConfigError`` listing every value name that is not one of ``dimensions``, a target that is
    also protected, and a ``monitor.reference_profile`` that names no profile (``node``: the file's YAML
    tree for line numbers; read from ``path`` when not given)."""
    if node is None and path.is_file():
        node = read_yaml(path)[1]
    problems = []
    for loc, name in _value_name_locations(config):
        if name in dimensions:
            continue
        close = difflib.get_close_matches(name, list(dimensions), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"values of this bundle: {', '.join(dimensions)}"
        problems.append(Problem(str(path), line_of(node, loc), format_loc(loc), f"unknown value '{name}'", hint))
    if "default" in config.profiles:
        problems.append(
            Problem(
                str(path),
                line_of(node, ("profiles", "default")),
                "profiles.default",
                "'default' is the top-level profile",
                "rename the profile",
            )
        )
    for profile, spec in [("default", config.profile()), *config.profiles.items()]:
        for name in set(spec.targets) & set(spec.protected):
            loc = ("protected", name) if profile == "default" else ("profiles", profile, "protected", name)
            problems.append(
                Problem(
                    str(path),
                    line_of(node, loc),
                    format_loc(loc),
                    f"'{name}' is both a target and protected",
                    "remove it from one of them",
                )
            )
    reference = config.monitor.reference_profile
    if (
        "reference_profile" in config.monitor.model_fields_set
        and reference is not None
        and reference not in config.profile_names
    ):
        loc = ("monitor", "reference_profile")
        problems.append(
            Problem(
                str(path),
                line_of(node, loc),
                format_loc(loc),
                f"'{reference}' is not a profile here (profiles: {', '.join(config.profile_names)})",
                f"add a profile without targets ('profiles: {{{reference}: {{}}}}') or set it to null",
            )
        )
    if problems:
        raise ConfigError(problems)


def upstream_api_key(sourced: SourcedConfig) -> str | None:
    """The proxy-mode upstream's API key from the environment variable ``upstream.api_key_env`` names
    (None when it names none); a named variable that is unset is an error at that line of the config."""
    import os

    spec = sourced.config.upstream
    if spec is None or spec.api_key_env is None:
        return None
    key = os.environ.get(spec.api_key_env)
    if not key:
        raise ConfigError.single(
            sourced.where,
            f"the environment variable {spec.api_key_env} is not set",
            line=sourced.line("upstream.api_key_env"),
            field="upstream.api_key_env",
            hint="export it in the server's environment, or remove api_key_env",
        )
    return key
