"""Command-line options shared by several commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

if TYPE_CHECKING:
    from causalguard.graphs.behaviour.reply_backends import ReplyBackend
    from causalguard.graphs.ray_pool import RayOptions
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
QuestionnaireOpt = Annotated[str | None, typer.Option(help="ValueBench CSV only: keep rows of this questionnaire.")]


def split_list(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


BackendOpt = Annotated[
    Literal["local", "ray"],
    typer.Option(
        help="Where the work runs: local (this process) or ray (an actor pool on a Ray cluster, each actor "
        "loading the model once; pip install 'causalguard[ray]'). The results are the same."
    ),
]
RayOpt = Annotated[
    str | None,
    typer.Option(
        "--ray",
        help="--backend ray: the actor pool as key=value pairs: actors (2), cpus and gpus reserved "
        "per actor (1, 0), threads (torch threads per actor; default this process's, so that "
        "results match a local run byte for byte), restarts (3), address (the cluster to join, "
        "e.g. ray://head:10001 or auto; default: start one on this machine). Example: "
        "--ray actors=8,gpus=1,address=auto",
    ),
]
SecondJudgeOpt = Annotated[
    str | None,
    typer.Option(
        help="Also judge each target with a judge that selected nothing, on another model: probe:FOLDER (a "
        "probe judge folder, e.g. the bundle's second_judge; 'behaviour judge --kind probe --out' fits one), "
        "contrast:MODEL or MODEL (likelihood contrasts, e.g. gemma3-270m). A lever or profile then passes only "
        "if it sees the target move the intended way too.",
    ),
]
CheckJudgeOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="A judge that can only veto (repeatable; same forms as --second-judge): a target it sees move "
        "significantly the wrong way fails; one it does not see move does not.",
    ),
]
# the largest seed numpy and Python generators all take (numpy: 0 .. 2**32 - 1)
MAX_SEED = 2**32 - 1

_RAY_KEYS = {"actors": int, "cpus": float, "gpus": float, "threads": int, "restarts": int, "address": str}


def ray_options(text: str | None) -> RayOptions:
    """``--ray`` parsed: ``key=value`` pairs separated by commas; a bad one is an error naming it and the fix."""
    from causalguard.graphs.ray_pool import RayOptions

    values: dict[str, Any] = {}
    for pair in (text or "").split(","):
        if not pair.strip():
            continue
        key, sep, raw = (part.strip() for part in pair.partition("="))
        if not sep or key not in _RAY_KEYS or not raw:
            raise typer.BadParameter(
                f"'{pair.strip()}' is not one of {', '.join(f'{k}=...' for k in _RAY_KEYS)}", param_hint="--ray"
            )
        try:
            values[key] = _RAY_KEYS[key](raw)
        except ValueError:
            raise typer.BadParameter(f"{key} must be a number, got '{raw}'", param_hint="--ray") from None
    names = {"cpus": "num_cpus", "gpus": "num_gpus", "restarts": "max_restarts"}
    try:
        return RayOptions(**{names.get(k, k): v for k, v in values.items()})
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--ray") from None


def _checked(backend: str, ray: str | None) -> None:
    if backend == "local" and ray:
        raise typer.BadParameter("--ray sets up the Ray backend: add --backend ray, or drop --ray", param_hint="--ray")


def survey_backend(backend: str, ray: str | None) -> SurveyBackend:
    """Where a survey's conditions are scored, as ``--backend`` and ``--ray`` name it."""
    from causalguard.graphs.survey.backends import LocalBackend

    _checked(backend, ray)
    if backend == "local":
        return LocalBackend()
    from causalguard.graphs.survey.ray_backend import RayBackend

    return RayBackend(ray_options(ray))


def reply_backend(backend: str, ray: str | None) -> ReplyBackend:
    """Where reply runs generate their batches, as ``--backend`` and ``--ray`` name it."""
    from causalguard.graphs.behaviour.reply_backends import LocalReplies

    _checked(backend, ray)
    if backend == "local":
        return LocalReplies()
    from causalguard.graphs.behaviour.reply_backends import RayReplies

    return RayReplies(ray_options(ray))
