"""Surveys on a local Ray cluster (two actors on this machine): the same scores.csv as the local backend, byte
for byte, also when an actor is killed mid-run or the driver dies and the run is resumed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from causalguard.graphs.ray_pool import RayNotInstalledError, RayOptions, WorkerLostError
from causalguard.graphs.survey.backends import LocalBackend
from causalguard.graphs.survey.conditions import Condition, build_conditions, standard_roles
from causalguard.graphs.survey.ray_backend import RayBackend
from causalguard.graphs.survey.runner import run_survey
from causalguard.graphs.survey.settings import SurveySettings
from causalguard.models.loaded import LoadedModel
from causalguard.values.inventory import Inventory

pytestmark = pytest.mark.slow
SETTINGS = SurveySettings(method="statement", batch_size=16)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    from causalguard.values.loading import load_inventory

    return load_inventory("schwartz-basic-10", dimensions=["power", "benevolence"])


@pytest.fixture(scope="module")
def saved_tiny(tiny_lm: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """The tiny model saved as a model folder, so that every actor can load it by name."""
    from causalguard.models.loading import load_model

    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_lm.model.save_pretrained(folder)
    tiny_lm.tokenizer.save_pretrained(folder)
    return load_model(str(folder))


@pytest.fixture(scope="module")
def conditions(inventory: Inventory) -> list[Condition]:
    return build_conditions(standard_roles(inventory, personas=5, include_value_roles=False, include_anchors=False))


@pytest.fixture(scope="module")
def local_scores(
    saved_tiny: LoadedModel, inventory: Inventory, conditions: list[Condition], tmp_path_factory: pytest.TempPathFactory
) -> bytes:
    out = tmp_path_factory.mktemp("local")
    run_survey(saved_tiny, inventory, conditions, SETTINGS, out, progress=False, backend=LocalBackend())
    return (out / "scores.csv").read_bytes()


def _timing(out: Path) -> dict[str, Any]:
    return json.loads((out / "run.json").read_text())["timing"]


def test_two_actors_give_the_local_matrix_byte_for_byte(
    ray_cluster: Any,
    saved_tiny: LoadedModel,
    inventory: Inventory,
    conditions: list[Condition],
    local_scores: bytes,
    tmp_path: Path,
) -> None:
    run_survey(
        saved_tiny, inventory, conditions, SETTINGS, tmp_path, progress=False, backend=RayBackend(RayOptions(actors=2))
    )
    assert (tmp_path / "scores.csv").read_bytes() == local_scores
    timing = _timing(tmp_path)
    assert timing["backend"] == "ray" and len(timing["workers"]) == 2
    assert sum(w["conditions"] for w in timing["workers"].values()) == len(conditions)


def test_a_killed_actor_is_restarted_and_its_conditions_retried(
    ray_cluster: Any,
    saved_tiny: LoadedModel,
    inventory: Inventory,
    conditions: list[Condition],
    local_scores: bytes,
    tmp_path: Path,
) -> None:
    backend = RayBackend(RayOptions(actors=2))
    killed: list[str] = []

    def kill_once(condition_id: str) -> None:
        if not killed:
            ray_cluster.kill(backend.actors[0], no_restart=False)  # mid-run, with conditions queued on it
            killed.append(condition_id)

    run_survey(
        saved_tiny,
        inventory,
        conditions,
        SETTINGS,
        tmp_path,
        progress=False,
        backend=backend,
        on_condition_done=kill_once,
    )
    assert killed and (tmp_path / "scores.csv").read_bytes() == local_scores
    assert sum(w["conditions"] for w in _timing(tmp_path)["workers"].values()) == len(conditions)


@pytest.mark.heavy  # about 15 s on 2 cores; CI runs it (.ci/run)
def test_a_run_that_died_on_the_driver_resumes_from_its_checkpoint(
    ray_cluster: Any,
    saved_tiny: LoadedModel,
    inventory: Inventory,
    conditions: list[Condition],
    local_scores: bytes,
    tmp_path: Path,
) -> None:
    finished: list[str] = []

    def die_after_two(condition_id: str) -> None:
        finished.append(condition_id)
        if len(finished) == 2:
            raise KeyboardInterrupt  # the driver is stopped

    with pytest.raises(KeyboardInterrupt):
        run_survey(
            saved_tiny,
            inventory,
            conditions,
            SETTINGS,
            tmp_path,
            progress=False,
            backend=RayBackend(RayOptions(actors=2)),
            on_condition_done=die_after_two,
        )
    assert not (tmp_path / "scores.csv").exists()
    run_survey(
        saved_tiny, inventory, conditions, SETTINGS, tmp_path, progress=False, backend=RayBackend(RayOptions(actors=2))
    )
    assert (tmp_path / "scores.csv").read_bytes() == local_scores
    assert _timing(tmp_path)["computed_conditions"] == len(conditions) - 2


def test_an_actor_lost_beyond_its_restarts_stops_the_run_and_keeps_what_finished(
    ray_cluster: Any, saved_tiny: LoadedModel, inventory: Inventory, conditions: list[Condition], tmp_path: Path
) -> None:
    backend = RayBackend(RayOptions(actors=1, max_restarts=0))

    def kill(condition_id: str) -> None:
        ray_cluster.kill(backend.actors[0], no_restart=True)

    with pytest.raises(WorkerLostError, match="run the same command again to resume"):
        run_survey(
            saved_tiny,
            inventory,
            conditions,
            SETTINGS,
            tmp_path,
            progress=False,
            backend=backend,
            on_condition_done=kill,
        )
    rows = (tmp_path / "answers.csv").read_text().splitlines()
    assert len(rows) > 1 and rows[1].startswith(conditions[0].id + ",")


@pytest.mark.heavy  # about 15 s on 2 cores; CI runs it (.ci/run)
def test_the_real_default_model_gives_the_local_matrix(
    ray_cluster: Any, lm: LoadedModel, inventory: Inventory, tmp_path: Path
) -> None:
    conditions = build_conditions(
        standard_roles(inventory, personas=2, include_value_roles=False, include_anchors=False)
    )
    run_survey(lm, inventory, conditions, SETTINGS, tmp_path / "local", progress=False)
    run_survey(
        lm, inventory, conditions, SETTINGS, tmp_path / "ray", progress=False, backend=RayBackend(RayOptions(actors=2))
    )
    assert (tmp_path / "ray" / "scores.csv").read_bytes() == (tmp_path / "local" / "scores.csv").read_bytes()


def test_without_ray_the_backend_names_the_install(
    monkeypatch: pytest.MonkeyPatch, saved_tiny: LoadedModel, inventory: Inventory, conditions: list[Condition]
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RayNotInstalledError, match=r"causalguard\[ray\]"):
        RayBackend().run(saved_tiny, SETTINGS, conditions, list(inventory.items()), lambda c, a: None)
    with pytest.raises(ValueError, match="actors"):
        RayOptions(actors=0)


def test_reply_batches_on_two_actors_are_the_local_replies(
    ray_cluster: Any, saved_tiny: LoadedModel, tiny_sae: Any, tmp_path: Path
) -> None:
    from causalguard.adapters.hf.hooks import install_steering_hooks
    from causalguard.adapters.hf.interventions import FeatureEdit, SaeIntervention
    from causalguard.graphs.behaviour.replies import Persona, ReplyCondition, ReplySettings, ReplyStore, run_replies
    from causalguard.graphs.behaviour.reply_backends import RayReplies
    from causalguard.judging.prompt_sets import load_prompts

    steered = (SaeIntervention(tiny_sae, (FeatureEdit(3, "add", 4.0),)),)
    conditions = [
        ReplyCondition("none"),
        ReplyCondition("sae", interventions=steered),
        ReplyCondition("role", instructions=("Answer in one short sentence.",)),
    ]
    personas = [Persona("operator", "You are a helpful assistant."), Persona("plain", None)]
    prompts = list(load_prompts().split("dev").balanced(3))
    settings = ReplySettings(max_new_tokens=6)

    def replies(folder: Path, backend: Any) -> dict[Any, Any]:
        store = ReplyStore(folder, {"test": 1})
        with install_steering_hooks(saved_tiny.model, [tiny_sae.layer]):
            got = run_replies(saved_tiny, conditions, personas, prompts, settings, store, batch_size=4, backend=backend)
        return {k: (r.text, r.tokens, r.finish) for k, r in got.items()}

    local = replies(tmp_path / "local", None)
    backend = RayReplies(RayOptions(actors=2))
    assert replies(tmp_path / "ray", backend) == local
    assert len(backend.workers) == 2 and sum(n for n, _ in backend.workers.values()) == 5  # 18 replies, 4 a batch
    assert local[("sae", "plain", prompts[0].id)] != local[("none", "plain", prompts[0].id)]  # the SAE steered
