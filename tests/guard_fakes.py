"""A small synthetic catalog and bundle for planner and config unit tests (no model involved)."""

from __future__ import annotations

import numpy as np

from causalguard.bundle.catalog import Catalog, CatalogSae
from causalguard.bundle.effects import EffectModel
from causalguard.bundle.format import Bundle
from causalguard.bundle.graph import ValueGraph, make_edge

DIMS = ["achievement", "power", "benevolence"]


def _lever(
    lever_id: str,
    kind: str,
    target: str,
    direction: int,
    effects: dict[str, float],
    ppl: float | None = None,
    unparsed: float = 0.1,
    feature: int | None = None,
) -> dict:
    return {
        "id": lever_id,
        "kind": kind,
        "target": target,
        "direction": direction,
        "strength": 1.0 if kind == "role" else 0.5 * direction,
        "feature": feature,
        "text": f"Answer as someone {'inclined' if direction > 0 else 'disinclined'} to {target}."
        if kind == "role"
        else None,
        "source": "value_role" if kind == "role" else "contrast",
        "effects": {
            d: {
                "mean": effects.get(d, 0.0),
                "ci_low": effects.get(d, 0.0) - 0.02,
                "ci_high": effects.get(d, 0.0) + 0.02,
                "n": 5,
            }
            for d in DIMS
        },
        "counts": {
            d: {
                "increased": 4 if effects.get(d, 0) > 0.05 else 0,
                "decreased": 4 if effects.get(d, 0) < -0.05 else 0,
                "unchanged": 1,
            }
            for d in DIMS
        },
        "intended_share": 0.8,
        "specificity": 2.0,
        "fluency": {
            "perplexity": None if ppl is None else 10 * ppl,
            "perplexity_ratio": ppl,
            "unparseable_rate": unparsed,
        },
    }


def fake_catalog() -> Catalog:
    levers = [
        # the role lever for power also drags achievement along (as the graph says it should)
        _lever("role:power:-", "role", "power", -1, {"power": -0.30, "achievement": -0.20}),
        _lever("role:power:+", "role", "power", 1, {"power": 0.30, "achievement": 0.20}),
        _lever("sae:f7:-0.5", "sae", "power", -1, {"power": -0.15, "achievement": -0.02}, ppl=1.2, feature=7),
        _lever("sae:f9:-0.5", "sae", "power", -1, {"power": -0.40, "achievement": -0.01}, ppl=3.0, feature=9),
        _lever("role:benevolence:+", "role", "benevolence", 1, {"benevolence": 0.25, "power": -0.05}),
    ]
    return Catalog.model_validate(
        {
            "schema": "causalguard.catalog/1",
            "model": {"name": "fake"},
            "dimensions": DIMS,
            "sae": None,
            "personas": ["p1", "p2", "p3", "p4", "p5"],
            "baseline": {d: {"mean": 0.1, "ci_low": 0.0, "ci_high": 0.2, "n": 5} for d in DIMS},
            "noise_threshold": {d: 0.05 for d in DIMS},
            "baseline_fluency": {"perplexity": 10.0, "perplexity_ratio": 1.0, "unparseable_rate": 0.1},
            "levers": levers,
        }
    )


def fake_bundle() -> Bundle:
    graph = ValueGraph(tuple(DIMS), (make_edge("power", "achievement", "directed", stability=0.9),))
    total = np.eye(3)
    total[1, 0] = 0.6  # power -> achievement
    evaluation = {
        "leave_one_lever_out": {
            "interventions": 6,
            "predictors": {
                "graph": {"auroc": 0.8, "auroc_ci": [0.7, 0.9]},
                "no_graph": {"auroc": 0.5},
                "correlation": {"auroc": 0.6},
            },
        }
    }  # a graph that beats its baselines on held-out levers
    return Bundle(
        {"model": {"name": "fake"}, "evaluation": evaluation},
        graph,
        EffectModel(tuple(DIMS), total, np.zeros((0, 3, 3))),
        total,
        total,
        None,
        fake_catalog(),
    )


def fake_bundle_with_sae(sae_path: str) -> Bundle:
    """The fake bundle whose SAE levers point at a real SAE folder (e.g. the tiny test SAE)."""
    bundle = fake_bundle()
    assert bundle.catalog is not None
    bundle.catalog = bundle.catalog.model_copy(
        update={"sae": CatalogSae(path=sae_path, residual_norm=2.0, layer=0, hook_name="model.layers.0")}
    )
    return bundle


GUARD_YAML = """\
model: tiny-llama
targets:
  power: {direction: decrease}
protected:
  achievement: {tolerance: 0.05}
limits:
  max_levers: 1
profiles:
  kind:
    targets:
      benevolence: {direction: increase}
  plain: {}
audit:
  enabled: false
  items_per_audit: 6
"""


def reply_row(
    lever_id: str,
    effects: dict[str, float],
    *,
    half: float = 0.05,
    degraded: int = 1,
    baseline_degraded: int = 1,
    n: int = 40,
    target: str | None = None,
    direction: int = 1,
) -> dict:
    """One behaviour-report row for ``attach_replies``: judge effects with +-``half`` intervals."""
    from causalguard.judging.reply_quality import compare_degradation

    p = compare_degradation(
        [True] * degraded + [False] * (n - degraded), [True] * baseline_degraded + [False] * (n - baseline_degraded)
    ).p_value
    moved = None
    if target is not None:
        e = effects.get(target, 0.0)
        moved = bool(e - half > 0) if direction > 0 else bool(e + half < 0)
    return {
        "id": lever_id,
        "moves_target_as_intended": moved,
        "effects": {
            d: {
                "mean": effects.get(d, 0.0),
                "ci_low": effects.get(d, 0.0) - half,
                "ci_high": effects.get(d, 0.0) + half,
                "n": n,
            }
            for d in DIMS
        },
        "quality": {
            "degraded": degraded,
            "n": n,
            "baseline_degraded": baseline_degraded,
            "baseline_n": n,
            "rate": degraded / n,
            "p_value": p,
            "is_degraded": p < 0.05,
        },
    }


BASELINE = {d: 0.1 for d in DIMS}


def fake_catalog_v2() -> Catalog:
    """The fake catalog plus a weaker setting of f7, measured on replies:

    - role:power:- lowers power in replies (usable) but drags achievement;
    - sae:f7:-0.5 degrades replies; its weaker sibling sae:f7:-0.25 is fluent and lowers power a little;
    - role:benevolence:+ does nothing to benevolence in replies (no_target_effect);
    - sae:f9:-0.5 was never measured on replies."""
    from causalguard.graphs.levers.verdicts import attach_replies

    base = fake_catalog()
    weaker = _lever("sae:f7:-0.25", "sae", "power", -1, {"power": -0.08}, ppl=1.1, feature=7)
    catalog = Catalog.model_validate(
        {**base.model_dump(by_alias=True), "levers": [*base.model_dump(by_alias=True)["levers"], weaker]}
    )
    rows = [
        reply_row("role:power:-", {"power": -0.30, "achievement": -0.15}, target="power", direction=-1),
        reply_row("role:power:+", {"power": 0.20, "achievement": 0.10}, target="power"),
        reply_row("sae:f7:-0.5", {"power": -0.50}, degraded=30, target="power", direction=-1),
        reply_row("sae:f7:-0.25", {"power": -0.12, "achievement": -0.01}, target="power", direction=-1),
        reply_row("role:benevolence:+", {"benevolence": 0.02, "power": -0.01}, target="benevolence"),
    ]
    return attach_replies(catalog, rows, BASELINE)


def fake_bundle_v2() -> Bundle:
    bundle = fake_bundle()
    bundle.catalog = fake_catalog_v2()
    return bundle
