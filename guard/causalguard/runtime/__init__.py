"""Serving with a guard: ValueGuard (HF models), canary value audits."""

from causalguard.runtime.audit import AuditResult
from causalguard.runtime.value_guard import GuardedResponse, ValueGuard

__all__ = ["AuditResult", "GuardedResponse", "ValueGuard"]
