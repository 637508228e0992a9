"""Scoring methods by name: the one place that knows them all."""

from __future__ import annotations

from collections.abc import Callable

from causalguard.scoring.base import ScoringMethod
from causalguard.scoring.generate import GenerateParse
from causalguard.scoring.statement import StatementContrast
from causalguard.scoring.yesno import YesNoLogOdds

METHODS: dict[str, Callable[[int, bool, int], ScoringMethod]] = {
    "yesno": lambda batch_size, reuse_prefix, max_new_tokens: YesNoLogOdds(
        batch_size=batch_size, reuse_prefix=reuse_prefix
    ),
    "statement": lambda batch_size, reuse_prefix, max_new_tokens: StatementContrast(
        batch_size=batch_size, reuse_prefix=reuse_prefix
    ),
    "generate": lambda batch_size, reuse_prefix, max_new_tokens: GenerateParse(
        batch_size=batch_size, max_new_tokens=max_new_tokens
    ),
}
METHOD_NAMES = tuple(METHODS)


def make_method(
    name: str, *, batch_size: int = 32, reuse_prefix: bool = True, max_new_tokens: int = 100
) -> ScoringMethod:
    """Build a scoring method by name: ``yesno``, ``statement`` or ``generate``."""
    if name not in METHODS:
        raise ValueError(f"unknown scoring method {name!r}; choose one of {', '.join(METHOD_NAMES)}")
    return METHODS[name](batch_size, reuse_prefix, max_new_tokens)
