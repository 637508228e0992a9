"""Scoring methods: how a model's agreement with an inventory item is measured under a role."""

from causalguard.scoring.base import ItemAnswer, ScoringMethod
from causalguard.scoring.generate import GenerateParse
from causalguard.scoring.registry import METHOD_NAMES, make_method
from causalguard.scoring.statement import StatementContrast
from causalguard.scoring.yesno import YesNoLogOdds

__all__ = [
    "METHOD_NAMES",
    "GenerateParse",
    "ItemAnswer",
    "ScoringMethod",
    "StatementContrast",
    "YesNoLogOdds",
    "make_method",
]
