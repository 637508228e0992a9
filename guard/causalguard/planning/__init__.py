"""Choosing levers for value targets with the catalog and the causal graph, and explaining the choice."""

from causalguard.planning.planner import Plan, PlanInfeasibleError, ValueForecast, plan_levers

__all__ = ["Plan", "PlanInfeasibleError", "ValueForecast", "plan_levers"]
