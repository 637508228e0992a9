"""causalguard: value-alignment middleware for deployed chatbots.

Offline (``causalguard.graphs``): value surveys, causal value graphs and lever catalogs per model.
Serving (``causalguard``, ``causalguard.adapters``): steer a model's values and watch side effects.
Importing this package loads no model and has no side effects.
"""

from causalguard.errors import CausalguardError, ConfigError, ModelNotAvailableError
from causalguard.roles import BASELINE, Role, generate_personas, load_roles_file, value_roles
from causalguard.steering import NoSteering, PromptSteering, SteeringCondition
from causalguard.values import DEFAULT_INVENTORY, Dimension, Inventory, Item, load_inventory

__version__ = "0.1.0"

__all__ = [
    "BASELINE",
    "DEFAULT_INVENTORY",
    "CausalguardError",
    "ConfigError",
    "Dimension",
    "Inventory",
    "Item",
    "ModelNotAvailableError",
    "NoSteering",
    "PromptSteering",
    "Role",
    "SteeringCondition",
    "__version__",
    "generate_personas",
    "load_inventory",
    "load_roles_file",
    "value_roles",
]
