"""Command-line options shared by several commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import typer

if TYPE_CHECKING:
    from causalguard.graphs.behaviour.reply_backends import ReplyBackend
    from causalguard.graphs.survey.backends import SurveyBackend

ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", help="Registry name (see 'causalguard models'), model folder, .gguf file or HF id."),
]
InventoryOpt = Annotated[
    str, typer.Option(help="Inventory: 'schwartz-basic-10' (shipped), a YAML file, or a ValueBench CSV.")
]
DimensionsOpt = Annotated[
    str | None, typer.Option(help="Comma-separated dimension names to keep, e.g. 'power,benevolence'.")
]
QuestionnaireOpt = Annotated[
    str | None, typer.Option(help="ValueBench CSV only: keep rows of this questionnaire.")
]


def split_list(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


BackendOpt = Annotated[
    Literal["local", "ray"],
    typer.Option(help="Where the work runs: local (this process) or ray (an actor pool on a Ray cluster, each actor "
                      "loading the model once; pip install 'causalguard[ray]'). The results are the same."),
]
RayAddressOpt = Annotated[
    str | None, typer.Option(help="--backend ray: the cluster to join (e.g. ray://head:10001 or auto); default: "
                                  "start a local one on this machine.")
]
RayActorsOpt = Annotated[int, typer.Option(min=1, help="--backend ray: actors, each loading the model once.")]
RayActorCpusOpt = Annotated[float, typer.Option(min=0.01, help="--backend ray: CPUs reserved per actor.")]
RayActorGpusOpt = Annotated[float, typer.Option(min=0, help="--backend ray: GPUs reserved per actor.")]
RayActorThreadsOpt = Annotated[int | None, typer.Option(min=1, help="--backend ray: torch threads per actor; "
                                                                    "default: this process's, so that the scores "
                                                                    "match a local run byte for byte.")]


def survey_backend(backend: str, address: str | None, actors: int, cpus: float, gpus: float,
                   threads: int | None = None) -> SurveyBackend:
    """The backend the command-line options name."""
    from causalguard.graphs.survey.backends import LocalBackend

    if backend == "local":
        return LocalBackend()
    from causalguard.graphs.ray_pool import RayOptions
    from causalguard.graphs.survey.ray_backend import RayBackend

    return RayBackend(RayOptions(address=address, actors=actors, num_cpus=cpus, num_gpus=gpus, threads=threads))


def reply_backend(backend: str, address: str | None, actors: int, cpus: float, gpus: float,
                  threads: int | None = None) -> ReplyBackend:
    """Where reply runs generate their batches, as the command-line options name it."""
    from causalguard.graphs.behaviour.reply_backends import LocalReplies

    if backend == "local":
        return LocalReplies()
    from causalguard.graphs.behaviour.reply_backends import RayReplies
    from causalguard.graphs.ray_pool import RayOptions

    return RayReplies(RayOptions(address=address, actors=actors, num_cpus=cpus, num_gpus=gpus, threads=threads))
