"""The operator's guard configuration: schema, loading with located errors, atomic reload."""

from causalguard.config.holder import ConfigHolder
from causalguard.config.loading import load_guard_config
from causalguard.config.schema import GuardConfig, ProfileSpec, TargetSpec

__all__ = ["ConfigHolder", "GuardConfig", "ProfileSpec", "TargetSpec", "load_guard_config"]
