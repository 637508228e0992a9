"""The survey's honesty: reliability and validity figures, and the choice of scoring method."""

from causalguard.graphs.quality.reliability import cronbach_alpha, split_half
from causalguard.graphs.quality.report import build_quality_report, render_markdown

__all__ = ["build_quality_report", "cronbach_alpha", "render_markdown", "split_half"]
