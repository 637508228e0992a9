"""Build the survey's quality report (JSON-ready dict) and render it as Markdown."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from causalguard.graphs.survey.reliability import cronbach_alpha, split_half
from causalguard.graphs.survey.results import SurveyResult
from causalguard.graphs.survey.validity import anchor_checks, value_role_checks


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def _share(entries: dict[str, dict[str, Any]]) -> float | None:
    met = sum(e["met"] for e in entries.values())
    total = sum(e["checks"] for e in entries.values())
    return round(met / total, 4) if total else None


def build_quality_report(result: SurveyResult, agreement: dict[str, Any] | None = None) -> dict[str, Any]:
    reliability: dict[str, dict[str, float | None]] = {}
    unbalanced = []
    for dim in result.dimensions:
        _, scores = result.item_matrix(dim)
        polarities = [a.polarity for a in result.answers[result.conditions[0].id] if a.dimension == dim]
        reliability[dim] = {
            "alpha": _round(cronbach_alpha(scores)),
            "split_half": _round(split_half(scores, polarities)),
        }
        if len(set(polarities)) == 1:
            unbalanced.append(dim)
    roles = value_role_checks(result)
    anchors = anchor_checks(result)
    masses = [a.yes_no_mass for answers in result.answers.values() for a in answers if a.yes_no_mass is not None]
    alphas = [r["alpha"] for r in reliability.values() if r["alpha"] is not None]
    halves = [r["split_half"] for r in reliability.values() if r["split_half"] is not None]
    summary = {
        "conditions": len(result.conditions),
        "median_alpha": round(float(np.median(alphas)), 4) if alphas else None,
        "median_split_half": round(float(np.median(halves)), 4) if halves else None,
        "value_role_share_met": _share(roles),
        "value_role_on_target_top1": (
            round(sum(1 for r in roles.values() if r["on_target_rank"] == 1) / len(roles), 4) if roles else None
        ),
        "anchor_share_met": _share(anchors["per_dimension"]),
    }
    shares = [s for s in (summary["value_role_share_met"], summary["anchor_share_met"]) if s is not None]
    summary["validity"] = round(sum(shares) / len(shares), 4) if shares else None
    report: dict[str, Any] = {
        "method": result.metadata.get("method", {}),
        "model": result.metadata.get("model", {}),
        "summary": summary,
        "reliability": reliability,
        "value_roles": roles,
        "anchors": anchors,
        "unbalanced_dimensions": unbalanced,
    }
    if masses:
        m = np.array(masses)
        report["yes_no_mass"] = {
            "mean": round(float(m.mean()), 4),
            "p10": round(float(np.quantile(m, 0.1)), 4),
            "min": round(float(m.min()), 4),
        }
    if agreement is not None:
        report["agreement_with_generation"] = agreement
    return report


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def render_markdown(report: dict[str, Any]) -> str:
    s = report["summary"]
    lines = [
        f"# Survey quality: {report['model'].get('name', '?')} / method {report['method'].get('name', '?')}",
        "",
        f"- conditions: {s['conditions']}",
        f"- reliability across conditions: median Cronbach's alpha {_fmt(s['median_alpha'])}, "
        f"median split-half (Spearman-Brown) {_fmt(s['median_split_half'])}",
        f"- validity, value roles: {_fmt(s['value_role_share_met'])} of expected directions met; "
        f"own value moved most for {_fmt(s['value_role_on_target_top1'])} of dimensions",
        f"- validity, anchor personas: {_fmt(s['anchor_share_met'])} of expected directions met",
    ]
    if report.get("unbalanced_dimensions"):
        lines.append(
            f"- **warning**: every item of {', '.join(report['unbalanced_dimensions'])} is keyed one way: "
            "agreeing with everything reads as the value, so alpha is inflated by acquiescence and the "
            "scores are not comparable with balanced dimensions (add reverse-keyed items)"
        )
    if "yes_no_mass" in report:
        ym = report["yes_no_mass"]
        lines.append(
            f"- yes/no probability mass: mean {_fmt(ym['mean'])}, p10 {_fmt(ym['p10'])}, min {_fmt(ym['min'])}"
        )
    agreement = report.get("agreement_with_generation")
    if agreement:
        if agreement.get("applicable"):
            lines.append(
                f"- agreement with generate-then-parse: {_fmt(agreement['agreement'])} raw logit answers, "
                f"{_fmt(agreement['agreement_calibrated'])} calibrated, on {agreement['parsed']} parsed of "
                f"{agreement['sample']} sampled answers (unparsed {_fmt(agreement['unparsed_rate'])}, "
                f"generated yes {_fmt(agreement['generated_yes_rate'])})"
            )
        else:
            lines.append(f"- agreement with generate-then-parse: n/a ({agreement['reason']})")
    lines += [
        "",
        "| dimension | alpha | split-half | value roles met | contrast on target | rank | anchors met |",
        "|---|---|---|---|---|---|---|",
    ]
    for dim, rel in report["reliability"].items():
        role = report["value_roles"].get(dim, {})
        anchor = report["anchors"]["per_dimension"].get(dim, {})
        lines.append(
            f"| {dim} | {_fmt(rel['alpha'])} | {_fmt(rel['split_half'])} | "
            f"{role.get('met', 'n/a')}/{role.get('checks', 'n/a')} | {_fmt(role.get('contrast_on_target'))} | "
            f"{role.get('on_target_rank', 'n/a')} | {anchor.get('met', 'n/a')}/{anchor.get('checks', 'n/a')} |"
        )
    return "\n".join(lines) + "\n"
