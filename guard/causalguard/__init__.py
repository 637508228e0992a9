"""causalguard: value-alignment middleware for deployed chatbots.

Offline (``causalguard.graphs``): value surveys, causal value graphs and lever catalogs per model.
Serving (``causalguard``, ``causalguard.adapters``): steer a model's values and watch side effects.
Importing this package loads no model and has no side effects; the heavy public names
(``ValueGuard``, ``load_model``, ...) are imported on first use (PEP 562), so ``import causalguard``
stays fast.

    from causalguard import ValueGuard, load_model
"""

from pkgutil import extend_path
from typing import TYPE_CHECKING, Any

# causalguard.adapters and causalguard.graphs live in their own source roots (adapters/, graphs/): when
# the package runs from a checkout (PYTHONPATH=guard:adapters:graphs), find them there too. An installed
# package maps them with package-dir and needs nothing of this.
__path__ = extend_path(__path__, __name__)

from causalguard.errors import CausalguardError, ConfigError, ModelNotAvailableError
from causalguard.roles import BASELINE, Role, generate_personas, load_roles_file, value_roles
from causalguard.steering_conditions import NoSteering, PromptSteering, SteeringCondition
from causalguard.values import DEFAULT_INVENTORY, Dimension, Inventory, Item, load_inventory

__version__ = "0.1.0"

# name -> module that defines it, imported on first attribute access
_LAZY = {
    "ValueGuard": "causalguard.runtime.value_guard",
    "GuardedResponse": "causalguard.runtime.value_guard",
    "load_model": "causalguard.models.loading",
    "load_bundle": "causalguard.bundle.format",
    "load_guard_config": "causalguard.config.loading",
    "PlanInfeasibleError": "causalguard.planning.planner",
    "ProbeJudge": "causalguard.judging.judge",
    "load_prompts": "causalguard.judging.prompt_sets",
}

if TYPE_CHECKING:
    from causalguard.bundle.format import load_bundle
    from causalguard.config.loading import load_guard_config
    from causalguard.judging.judge import ProbeJudge
    from causalguard.judging.prompt_sets import load_prompts
    from causalguard.models.loading import load_model
    from causalguard.planning.planner import PlanInfeasibleError
    from causalguard.runtime.value_guard import GuardedResponse, ValueGuard


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'causalguard' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "BASELINE",
    "DEFAULT_INVENTORY",
    "CausalguardError",
    "ConfigError",
    "Dimension",
    "GuardedResponse",
    "Inventory",
    "Item",
    "ModelNotAvailableError",
    "NoSteering",
    "PlanInfeasibleError",
    "ProbeJudge",
    "PromptSteering",
    "Role",
    "SteeringCondition",
    "ValueGuard",
    "__version__",
    "generate_personas",
    "load_bundle",
    "load_guard_config",
    "load_inventory",
    "load_model",
    "load_prompts",
    "load_roles_file",
    "value_roles",
]
