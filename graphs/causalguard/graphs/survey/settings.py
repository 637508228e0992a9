"""What changes a survey's numbers (part of a run's identity)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SurveySettings:
    """Everything that changes a survey's numbers. A resumed run must use the same settings."""

    method: str = "statement"
    batch_size: int = 32
    reuse_prefix: bool = True
    max_new_tokens: int = 100
    agreement_sample: int = 0
    seed: int = 0
