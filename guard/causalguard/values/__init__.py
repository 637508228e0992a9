"""Value inventories: dimensions with definitions and keyed items, loaded from YAML or ValueBench CSV."""

from causalguard.values.inventory import Dimension, Inventory, Item
from causalguard.values.loading import DEFAULT_INVENTORY, load_inventory

__all__ = ["DEFAULT_INVENTORY", "Dimension", "Inventory", "Item", "load_inventory"]
