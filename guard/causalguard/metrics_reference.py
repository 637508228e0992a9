"""Generate the metrics reference (``docs/metrics.md``) from ``GuardMetrics`` itself.

    .venv/bin/python -m causalguard.metrics_reference > docs/metrics.md

A test checks the committed file matches, so the reference cannot drift from the code.
"""

from __future__ import annotations

import sys

from prometheus_client.metrics import MetricWrapperBase

from causalguard.metrics import GuardMetrics

_SUFFIXES = {"counter": "_total", "info": "_info", "histogram": "", "gauge": ""}


def render() -> str:
    """The reference as Markdown: one row per metric, in the order ``GuardMetrics`` declares them."""
    rows = []
    for metric in vars(GuardMetrics()).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        kind = str(metric._type)  # prometheus-client keeps a wrapper's type, name, help and label names privately
        name = metric._name + _SUFFIXES.get(kind, "")
        labels = ", ".join(f"`{x}`" for x in metric._labelnames) or "-"
        what = metric._documentation.replace("|", "\\|")
        rows.append(f"| `{name}` | {kind} | {labels} | {what} |")
    return "\n".join(
        [
            "# Metrics reference",
            "",
            "Every metric the guard exports (`causalguard.metrics.GuardMetrics`), generated from the code by",
            "`python -m causalguard.metrics_reference`. Labels are bounded: `profile` (the config's profiles),",
            "`value` (the inventory's values), `method`/`kind` (lever kinds), `outcome`/`arm` (fixed sets); never",
            "request ids, prompts or replies. Value scores and changes are on the reply judge's scale (+1 = a",
            "typical reply holding the value) unless a plan is in survey units. Histograms also export",
            "`_bucket`, `_sum` and `_count`.",
            "",
            "| metric | type | labels | what |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    sys.stdout.write(render())
