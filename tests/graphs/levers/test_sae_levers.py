"""SAE levers: steering conditions, candidate search, measurement into a catalog, SAE training."""

import json
from pathlib import Path

import pytest
import torch

from causalguard import load_inventory
from causalguard.adapters.hf import FeatureEdit
from causalguard.adapters.hf.hooks import decoder_layers
from causalguard.adapters.hf.sae import LoadedSae, load_sae
from causalguard.adapters.hf.sae_condition import SaeSteering
from causalguard.bundle.catalog import build_catalog, load_catalog, save_catalog
from causalguard.bundle.lever import LeverSpec
from causalguard.graphs.levers.build import propose_levers
from causalguard.graphs.levers.candidates import find_candidates, residual_norm
from causalguard.graphs.levers.measure import NEUTRAL_TEXTS, MeasureSettings, fluency_costs, measure_effects
from causalguard.models.loaded import LoadedModel
from causalguard.roles.role import BASELINE
from causalguard.scoring.statement import StatementContrast
from causalguard.steering_conditions import NoSteering

DIMS = ["power", "benevolence"]


def _no_hooks(lm: LoadedModel) -> bool:
    return all(not layer._forward_hooks for layer in decoder_layers(lm.model))


def test_sae_steering_changes_scores_and_removes_its_hooks(tiny_lm: LoadedModel, tiny_sae: LoadedSae) -> None:
    items = list(load_inventory(dimensions=DIMS).items())[:6]
    method = StatementContrast()
    plain = method.score(tiny_lm, BASELINE, NoSteering(), items)
    steering = SaeSteering(tiny_sae, (FeatureEdit(3, "add", 4.0),), label="f3")
    steered = method.score(tiny_lm, BASELINE, steering, items)
    assert _no_hooks(tiny_lm)
    assert steering.id == "sae:f3"
    assert max(abs(a.raw - b.raw) for a, b in zip(plain, steered, strict=True)) > 1e-3
    again = method.score(tiny_lm, BASELINE, NoSteering(), items)
    assert [a.raw for a in again] == [a.raw for a in plain]  # nothing left behind


def test_sae_steering_validates_and_has_a_stable_repr(tiny_sae: LoadedSae) -> None:
    with pytest.raises(ValueError, match="out of range"):
        SaeSteering(tiny_sae, (FeatureEdit(999, "add", 1.0),))
    one = SaeSteering(tiny_sae, (FeatureEdit(2, "clamp", 1.5),))
    assert repr(one) == repr(SaeSteering(tiny_sae, (FeatureEdit(2, "clamp", 1.5),)))
    assert "0x" not in repr(one) and one.id == "sae:clamp2=1.5"


def test_candidates_are_distinct_usable_features(tiny_lm: LoadedModel, tiny_sae: LoadedSae) -> None:
    inventory = load_inventory(dimensions=DIMS)
    found = find_candidates(tiny_lm, tiny_sae, inventory, per_value=2, your_values=1, max_density=1.0)
    contrast = [c for c in found if c.source == "contrast"]
    assert {c.target for c in contrast} == set(DIMS) and len(contrast) == 4
    assert len({c.feature for c in found}) == len(found)
    assert all(0 <= c.feature < tiny_sae.d_sae for c in found)
    assert [c.target for c in found if c.source == "your_values"] == [None]
    assert residual_norm(tiny_lm, tiny_sae, NEUTRAL_TEXTS[:2]) > 0


def test_measured_catalog_round_trips_with_its_report(
    tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path
) -> None:
    inventory = load_inventory(dimensions=DIMS)
    from causalguard.graphs.levers.candidates import Candidate

    levers, sources = propose_levers(inventory, [Candidate(5, "power", 1.0, "contrast")], (0.5,))
    assert [lever.id for lever in levers] == [
        "role:power:+",
        "role:power:-",
        "role:benevolence:+",
        "role:benevolence:-",
        "sae:f5:+0.5",
        "sae:f5:-0.5",
    ]
    settings = MeasureSettings(personas=3, fluency_questions=2, fluency_tokens=4)
    measured = measure_effects(tiny_lm, inventory, levers, tiny_sae, 1.0, tmp_path, settings, progress=False)
    fluency = fluency_costs(tiny_lm, inventory, levers, tiny_sae, 1.0, settings)
    assert fluency["role:power:+"]["perplexity_ratio"] is None
    assert fluency["sae:f5:+0.5"]["perplexity_ratio"] != pytest.approx(1.0)
    catalog = build_catalog(
        model={"name": "tiny"},
        dimensions=DIMS,
        levers=levers,
        sources=sources,
        measured=measured,
        fluency=fluency,
        sae={"path": "sae", "residual_norm": 1.0},
    )
    effect = catalog.lever("sae:f5:+0.5").effects["power"]
    assert effect.n == 3 and effect.ci_low <= effect.mean <= effect.ci_high
    counts = catalog.lever("role:power:+").counts["power"]
    assert sum(counts.values()) == 3
    save_catalog(catalog, tmp_path)
    loaded = load_catalog(tmp_path)
    assert loaded == catalog
    report = (tmp_path / "CATALOG.md").read_text()
    assert "Roles vs SAE steering" in report and "sae:f5:+0.5" in report
    # the survey behind it resumes: a second run computes nothing new
    again = measure_effects(tiny_lm, inventory, levers, tiny_sae, 1.0, tmp_path, settings, progress=False)
    assert again["effects"] == measured["effects"]


def test_a_broken_catalog_names_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "catalog.json").write_text(json.dumps({"schema": "causalguard.catalog/1", "model": {}}))
    from causalguard import ConfigError

    with pytest.raises(ConfigError, match=r"catalog\.json.*dimensions"):
        load_catalog(tmp_path)


def test_lever_ids_are_stable() -> None:
    dim = load_inventory(dimensions=["power"]).dimensions[0]
    assert LeverSpec.role(dim, -1).id == "role:power:-"
    assert "disinclined" in (LeverSpec.role(dim, -1).text or "")
    assert LeverSpec.sae(12, -0.25, "power").id == "sae:f12:-0.25"


@pytest.mark.slow
def test_sae_training_writes_a_loadable_float16_sae(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from causalguard.graphs.sae.evaluate import sae_metrics
    from causalguard.graphs.sae.train import SaeTrainSettings, train_sae

    texts = [f"Sentence number {i} talks about values, honesty and power in daily life." for i in range(64)]
    settings = SaeTrainSettings(layer=1, d_sae=64, training_tokens=8192, context_size=32, train_batch_size_tokens=256)
    train_sae(tiny_lm, texts, settings, tmp_path / "sae")
    weights = load_file(str(tmp_path / "sae" / "sae_weights.safetensors"))
    assert all(t.dtype == torch.float16 for t in weights.values())
    loaded = load_sae(tmp_path / "sae", tiny_lm)
    assert (loaded.layer, loaded.d_sae) == (1, 64)
    metrics = sae_metrics(tiny_lm, loaded, texts[:8])
    assert 0 <= metrics["dead_fraction"] <= 1 and metrics["l0"] > 0
    assert metrics["ce_loss_zero_ablation"] > metrics["ce_loss_clean"] * 0.5


@pytest.mark.slow
def test_sae_build_chooses_a_layer_and_writes_its_card(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    from causalguard.graphs.sae.build import SaeBuildSettings, build_sae
    from causalguard.graphs.sae.train import SaeTrainSettings

    settings = SaeBuildSettings(
        candidate_layers=(0, 1),
        generated=4,
        max_new_tokens=6,
        personas=1,
        train=SaeTrainSettings(layer=-1, d_sae=32, training_tokens=4096, context_size=32, train_batch_size_tokens=256),
    )
    report = build_sae(tiny_lm, load_inventory(dimensions=DIMS), tmp_path / "sae", tmp_path / "work", settings)
    separation = report["layer_separation"]
    assert set(separation) == {"0", "1"} and str(report["layer"]) == max(separation, key=separation.get)
    assert report["corpus"]["by_source"]["generated"] == 4
    card = (tmp_path / "sae" / "SAE_CARD.md").read_text()
    assert "Layer choice" in card and "ce_loss_recovered" in card
    assert load_sae(tmp_path / "sae", tiny_lm).layer == report["layer"]
    # a rerun reuses the layer scan and the corpus from the work folder
    assert (tmp_path / "work" / "layers.json").exists() and (tmp_path / "work" / "corpus.jsonl").exists()


def test_levers_show_prints_the_shipped_catalog_and_refuses_a_bundle_without_one(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from causalguard.bundle.format import shipped_bundle_dir
    from causalguard.cli import app

    shown = CliRunner().invoke(app, ["levers", "show", str(shipped_bundle_dir("smollm2-135m-instruct"))])
    assert shown.exit_code == 0 and "Roles vs SAE steering" in shown.output
    missing = CliRunner().invoke(app, ["levers", "show", str(tmp_path)])
    assert missing.exit_code != 0 and "levers measure" in missing.output
    bad = CliRunner().invoke(app, ["levers", "measure", "--bundle", str(tmp_path), "--strengths", "0.5,x"])
    assert bad.exit_code != 0 and "comma-separated numbers" in bad.output
