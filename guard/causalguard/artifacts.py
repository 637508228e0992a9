"""Where every artifact lives: the file names of a model's bundle and of an SAE folder, in one place.

A bundle folder (``graphs/<model-slug>/`` for shipped models):

    bundle.json, effects.safetensors, graph.graphml, graph.svg    the causal value graph and its effects
    catalog.json, CATALOG.md                                      every lever's measured effects
    sae/ (cfg.json, sae_weights.safetensors, ...)                 the SAE the SAE levers use
    judge.json, judge.safetensors                                 the reply-level value judge
    behaviour.json, BEHAVIOUR.md                                  what every lever does to replies
    data/reply_interventions.csv, reply_graph/                    the value graph on replies (a bundle of its own)
    MODEL_CARD.md                                                 what the figures say, for people
"""

from __future__ import annotations

BUNDLE_SCHEMA = "causalguard.bundle/1"
BUNDLE_FILE = "bundle.json"
EFFECTS_FILE = "effects.safetensors"
GRAPHML_FILE = "graph.graphml"
SVG_FILE = "graph.svg"
MODEL_CARD = "MODEL_CARD.md"
REPLY_GRAPH_DIR = "reply_graph"  # the value graph discovered on replies ('graph build --replies')

CATALOG_SCHEMA = "causalguard.catalog/1"  # survey measurements only
CATALOG_SCHEMA_REPLIES = "causalguard.catalog/2"  # ... and what the replies showed (behaviour report)
CATALOG_FILE = "catalog.json"
CATALOG_REPORT = "CATALOG.md"

SAE_FOLDER = "sae"
SAE_CONFIG = "cfg.json"
SAE_WEIGHTS = "sae_weights.safetensors"

JUDGE_SCHEMA = "causalguard.judge/1"
JUDGE_FILE = "judge.json"
JUDGE_WEIGHTS = "judge.safetensors"

BEHAVIOUR_SCHEMA = "causalguard.behaviour/1"
BEHAVIOUR_FILE = "behaviour.json"
BEHAVIOUR_REPORT = "BEHAVIOUR.md"
