"""The operator's guard configuration: schema, loading with located errors, atomic reload."""

from causalguard.config.holder import ConfigHolder
from causalguard.config.loading import SourcedConfig, load_guard_config, read_guard_config
from causalguard.config.schema import GuardConfig, ProfileSpec, TargetSpec

__all__ = [
    "ConfigHolder",
    "GuardConfig",
    "ProfileSpec",
    "SourcedConfig",
    "TargetSpec",
    "load_guard_config",
    "read_guard_config",
]
