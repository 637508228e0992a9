"""Judges on another model than the one that selected the levers, and their scores kept beside a run.

A lever is selected on the bundle's probe judge, so that judge's estimate of its effect can be inflated
and its blind spots are the lever's blind spots. Confirmations and held-out looks therefore also judge
each lever's target with judges that selected nothing:

- the **second judge** decides: the lever holds only if it sees the target move the intended way
  beyond noise (95% t-interval);
- **check judges** can only veto: the lever fails if one sees the target move *significantly the wrong
  way*, and passes them otherwise (a check judge too weak to see a move cannot block it).

Either role takes a ``ContrastJudge`` (likelihood contrasts over the values' definitions: slow, seconds
per reply and value on CPU) or a ``ProbeJudge`` fitted on another model (one pass per reply). Scores are
saved 32 replies at a time per judge kind and value, so a rerun after an interruption resumes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from causalguard.errors import ConfigError
from causalguard.graphs.behaviour.score_cache import cached_scores
from causalguard.judging.judge import ContrastJudge, ProbeJudge
from causalguard.models.loaded import LoadedModel

Role = Literal["second", "check"]


@dataclass(frozen=True)
class OtherJudge:
    """A judge that selected no lever, in the role it plays (``second`` decides, ``check`` vetoes)."""

    judge: ContrastJudge | ProbeJudge
    role: Role = "second"

    @property
    def kind(self) -> str:
        return "contrast" if isinstance(self.judge, ContrastJudge) else "probe"

    @property
    def model(self) -> str:
        return self.judge.lm.name

    def describe(self) -> dict[str, Any]:
        """What a record says about the judge: kind, model and role (and the contrast framings)."""
        out: dict[str, Any] = {"kind": self.kind, "model": self.model, "role": self.role}
        if isinstance(self.judge, ContrastJudge):
            out["framings"] = len(self.judge.framings)
        else:
            out["layer"] = self.judge.weights.layer
        return out

    def cache_name(self, value: str) -> str:
        """The score file for ``value`` (contrast scores keep the name earlier runs used)."""
        return f"second_judge_{value}.json" if self.kind == "contrast" else f"second_judge_probe_{value}.json"

    def target_scores(
        self,
        value: str,
        work: Path,
        chosen: Sequence[tuple[str, str, str]],
        texts: Sequence[str],
        row: dict[tuple[str, str, str], int],
        log: Callable[[str], None],
        *,
        field: str = "--second-judge",
    ) -> list[float]:
        """The judge's scores on ``value`` of the ``chosen`` replies (``texts[row[key]]``), kept in ``work``."""
        if value not in self.judge.dimensions:
            raise ConfigError.single(field, f"the {self.kind} judge on {self.model} has no value '{value}'")
        if isinstance(self.judge, ContrastJudge):
            by_value = {v.name: v for v in self.judge.values}
            contrast = ContrastJudge(
                self.judge.lm, [by_value[value]], self.judge.framings, batch_size=self.judge.batch_size
            )
            version = contrast.cache_version()

            def compute(idx: Sequence[int]) -> list[float]:
                return [float(x) for x in contrast.score([texts[row[chosen[i]]] for i in idx])[:, 0]]

        else:
            probe = self.judge
            column = probe.dimensions.index(value)
            version = probe_cache_version(probe)

            def compute(idx: Sequence[int]) -> list[float]:
                return [float(x) for x in probe.score([texts[row[chosen[i]]] for i in idx])[:, column]]

        def progress(done: int, total: int) -> None:
            log(f"  {self.kind} judge ({self.model}) on {value}: {done}/{total} replies")

        return cached_scores(work / self.cache_name(value), version, chosen, compute, chunk=32, progress=progress)


def probe_cache_version(judge: ProbeJudge) -> str:
    """What a probe judge's scores depend on (model fingerprint, layer, weights), as a short hash."""
    w = judge.weights
    digest = hashlib.sha256()
    digest.update(f"{judge.lm.fingerprint}|{w.layer}|{','.join(w.dimensions)}".encode())
    for array in (w.mean, w.scale, w.directions, w.midpoints):
        digest.update(array.astype("float32").tobytes())
    return "probe:" + digest.hexdigest()[:16]


def sees(interval: dict[str, float], direction: float) -> bool:
    """Whether a 95% interval excludes 0 on the side of ``direction`` (> 0 up, < 0 down)."""
    return bool(interval["ci_low"] > 0) if direction > 0 else bool(interval["ci_high"] < 0)


def opposes(interval: dict[str, float], direction: float) -> bool:
    """Whether a 95% interval excludes 0 on the side *against* ``direction``."""
    return sees(interval, -direction)


def load_other_judge(
    spec: str,
    role: Role = "second",
    *,
    field: str = "--second-judge",
    load: Callable[[str], LoadedModel] | None = None,
) -> OtherJudge:
    """The judge ``spec`` names, in ``role``: ``probe:FOLDER`` (a probe judge folder, ``judge.json`` +
    ``judge.safetensors``, fitted on any model: ``causalguard behaviour judge --kind probe --out``),
    ``contrast:MODEL`` or a bare ``MODEL`` (a likelihood-contrast judge on that model over the Schwartz
    values' definitions). ``load`` loads a model by name (default ``load_model``; pass a memoised one so
    that two judges on one model share it). Errors name ``field`` and the folder or model."""
    import json

    from causalguard.artifacts import JUDGE_FILE
    from causalguard.judging.judge import ValueDefinition, load_probe_judge
    from causalguard.models import load_model
    from causalguard.values import load_inventory

    load_by_name = load or load_model

    kind, _, rest = spec.partition(":")
    if not rest:
        kind, rest = "contrast", spec
    if kind == "contrast":
        inventory = load_inventory("schwartz-basic-10")
        values = [ValueDefinition(d.name, d.display, d.definition, d.opposite_text) for d in inventory.dimensions]
        return OtherJudge(ContrastJudge(load_by_name(rest), values), role)
    if kind != "probe":
        raise ConfigError.single(
            field, f"unknown judge kind {kind!r} in {spec!r}", hint="use probe:FOLDER, contrast:MODEL or MODEL"
        )
    folder = Path(rest)
    path = folder / JUDGE_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError.single(
            str(path),
            "no probe judge here",
            field=field,
            hint="fit one: 'causalguard behaviour judge --judge-model MODEL --kind probe --out FOLDER'",
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError.single(str(path), f"not valid JSON: {exc}", field=field) from None
    name = (doc.get("model") or {}).get("name") if isinstance(doc, dict) else None
    if not isinstance(name, str) or not name:
        raise ConfigError.single(str(path), "expected the judge model's name", field="model.name")
    return OtherJudge(load_probe_judge(folder, load_by_name(name)), role)
