"""Causal value graphs: discovery (PC), stability, linear effects, prediction, evaluation, comparison."""
