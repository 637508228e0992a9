"""Offline tooling: value surveys, quality reports, causal value graphs and per-model bundles."""
