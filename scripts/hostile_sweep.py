"""A sweep of hostile inputs across causalguard's five input families, each case classified.

    .venv/bin/python scripts/hostile_sweep.py [--out runs/hostile-sweep.json] [--seed 0]

Families: the operator config (``guard.yaml``, read and planned against the shipped SmolLM2 bundle), the
inventory, roles and prompt files, bundles (byte flips, and field damage resealed so the checks behind the
hashes must catch it), the CLI (commands that refuse before loading a model) and HTTP (a running guard
server on a tiny random model). Every case ends in one class:

- ``clear_error``: a causalguard error (or a typer usage error, or an HTTP 4xx in OpenAI's shape) that
  names the file, field, flag or HTTP parameter;
- ``vague_error``: an error of that kind that names none of them;
- ``accepted``: the input was taken (listed in the report for review: accepted hostile input must be
  input that means something);
- ``traceback``: any other exception, or an HTTP 5xx;
- ``hang``: no answer within ``--timeout`` seconds.

Cases are generated from a seed, so a sweep can be repeated exactly; a new seed writes new cases.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' tiny model and fakes, for the HTTP family

HOSTILE_SCALARS: list[Any] = [
    None,
    True,
    False,
    "",
    " ",
    "x" * 70_000,
    -1,
    0,
    1,
    -0.0,
    1e-320,
    1e308,
    -1e308,
    2**64,
    -(2**63),
    float("nan"),
    float("inf"),
    float("-inf"),
    [],
    {},
    [1, 2],
    {"a": 1},
    "\x00",
    "\u202e",
    "🙂" * 50,
    "1e3",
    "true",
    "null",
    "../../etc/passwd",
    "a\nb",
]


@dataclass
class Outcome:
    family: str
    case: str
    klass: str
    detail: str
    seconds: float


class Hang(Exception):
    pass


class Answer(Exception):
    """A case's own verdict (an HTTP answer already classified)."""

    def __init__(self, klass: str, detail: str) -> None:
        super().__init__(detail)
        self.klass = klass


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    def alarm(signum: int, frame: Any) -> None:
        raise Hang

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def classify_exception(exc: BaseException, names: tuple[str, ...]) -> tuple[str, str]:
    from causalguard.errors import CausalguardError

    text = str(exc)
    if isinstance(exc, Hang):
        return "hang", ""
    if isinstance(exc, CausalguardError):
        located = any(n and n in text for n in names) or bool(getattr(exc, "problems", None))
        return ("clear_error" if located else "vague_error"), text.splitlines()[0][:200]
    return "traceback", f"{type(exc).__name__}: {text[:200]}"


def run_case(
    family: str, case: str, action: Callable[[], str | None], names: tuple[str, ...], timeout: float
) -> Outcome:
    started = time.perf_counter()
    try:
        with deadline(timeout):
            detail = action()
        klass, text = "accepted", detail or ""
    except Answer as exc:
        klass, text = exc.klass, str(exc)
    except SystemExit as exc:  # typer's usage errors
        klass, text = ("clear_error" if exc.code not in (0, None) else "accepted"), f"exit {exc.code}"
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        klass, text = classify_exception(exc, names)
    return Outcome(family, case, klass, text, round(time.perf_counter() - started, 3))


# ---------------------------------------------------------------- config
CONFIG_BASE = """\
model: smollm2-135m-instruct
bundle: builtin
system_prompt: "You are a helpful assistant."
units: auto
targets:
  stimulation: {direction: increase}
protected:
  security: {tolerance: 0.2}
method: vector
profiles:
  plain: {}
limits:
  max_levers: 2
  max_perplexity_ratio: 1.5
audit:
  enabled: false
  interval_seconds: 60
server:
  max_concurrency: 16
  max_queue: 16
  max_tokens_limit: 256
  request_timeout_seconds: 120
monitor:
  sample_rate: 0.5
"""
CONFIG_PATHS = [
    ("model",),
    ("bundle",),
    ("system_prompt",),
    ("units",),
    ("method",),
    ("on_infeasible",),
    ("targets",),
    ("targets", "stimulation"),
    ("targets", "stimulation", "direction"),
    ("targets", "stimulation", "change"),
    ("targets", "stimulation", "score"),
    ("targets", "nonvalue"),
    ("protected", "security", "tolerance"),
    ("protected",),
    ("profiles",),
    ("profiles", "plain"),
    ("profiles", "x y"),
    ("limits", "max_levers"),
    ("limits", "max_perplexity_ratio"),
    ("limits", "max_unparseable_increase"),
    ("audit", "enabled"),
    ("audit", "interval_seconds"),
    ("audit", "values"),
    ("server", "max_concurrency"),
    ("server", "max_queue"),
    ("server", "max_tokens_limit"),
    ("server", "request_timeout_seconds"),
    ("server", "api_keys"),
    ("server", "requests_per_minute_per_key"),
    ("server", "api_keys_env"),
    ("monitor", "sample_rate"),
    ("allow_client_interventions",),
    ("upstream",),
    ("unknown_top_level",),
]


def config_cases(rng: random.Random, tmp: Path, timeout: float) -> Iterator[Outcome]:
    import yaml

    from causalguard.adapters.hf.vectors import load_vectors
    from causalguard.bundle.format import load_bundle, shipped_bundle_dir
    from causalguard.config.loading import read_guard_config
    from causalguard.runtime.state import build_guard_state

    folder = shipped_bundle_dir("smollm2-135m-instruct")
    bundle = load_bundle(folder)
    vectors = load_vectors(folder / "vectors", hidden_size=576, num_layers=30)
    for path in CONFIG_PATHS:
        for value in rng.sample(HOSTILE_SCALARS, 10):
            data = yaml.safe_load(CONFIG_BASE)
            node = data
            for key in path[:-1]:
                node = node.setdefault(key, {}) if isinstance(node, dict) else node
            node[path[-1]] = value
            text = yaml.safe_dump(data, allow_unicode=True)
            file = tmp / "guard.yaml"
            file.write_text(text, encoding="utf-8")
            name = f"{'.'.join(path)} = {json.dumps(value)[:40]}"

            def act(file: Path = file) -> str:
                sourced = read_guard_config(file)
                state = build_guard_state(sourced, bundle, sae=None, vectors=vectors)
                return "plans: " + ", ".join(f"{k}={[lv.id for lv in p.levers]}" for k, p in state.plans.items())

            yield run_case("config", name, act, ("guard.yaml", path[-1]), timeout)
    raw_texts = {
        "duplicate key": "model: a\nmodel: b\n",
        "alias bomb": "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
        + "".join(f"{n}: &{n} [{','.join([f'*{p}'] * 10)}]\n" for p, n in zip("abc", "bcd", strict=True))
        + "model: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n",
        "deep nesting": "targets: " + "[" * 5000 + "]" * 5000 + "\n",
        "not a mapping": "- a\n- b\n",
        "binary": "\xff\xfe\x00garbage",
        "python tag": "model: !!python/object/apply:os.system ['true']\n",
        "tab indentation": "targets:\n\tstimulation: {direction: increase}\n",
        "empty file": "",
    }
    for name, text in raw_texts.items():
        file = tmp / "raw.yaml"
        file.write_bytes(text.encode("utf-8", "surrogateescape") if name != "binary" else b"\xff\xfe\x00garbage")
        yield run_case(
            "config",
            f"raw: {name}",
            lambda file=file: str(read_guard_config(file).config.model)[:40],
            ("raw.yaml",),
            timeout,
        )


# ---------------------------------------------------------------- files: inventory, roles, prompts
def file_cases(rng: random.Random, tmp: Path, timeout: float) -> Iterator[Outcome]:
    from causalguard.judging.prompt_sets import load_prompts
    from causalguard.roles.roles_file import load_roles_file
    from causalguard.values.loading import load_inventory

    good_prompt = {"id": "p1", "text": "How do I plan my week?", "values": ["security"], "split": "dev"}
    for field in ("id", "text", "values", "split", "extra"):
        for value in rng.sample(HOSTILE_SCALARS, 10):
            record = {**good_prompt, field: value}
            file = tmp / "prompts.jsonl"
            file.write_text(json.dumps(record, allow_nan=True) + "\n", encoding="utf-8")
            yield run_case(
                "files",
                f"prompts.{field} = {json.dumps(value, allow_nan=True)[:40]}",
                lambda file=file: f"{len(load_prompts(file).prompts)} prompts",
                ("prompts.jsonl", field),
                timeout,
            )
    good_role = {"id": "coach", "system_prompt": "You are a sports coach."}
    for field in ("id", "system_prompt", "extra"):
        for value in rng.sample(HOSTILE_SCALARS, 8):
            file = tmp / "roles.jsonl"
            file.write_text(json.dumps({**good_role, field: value}, allow_nan=True) + "\n", encoding="utf-8")
            yield run_case(
                "files",
                f"roles.{field} = {json.dumps(value, allow_nan=True)[:40]}",
                lambda file=file: f"{len(load_roles_file(file))} roles",
                ("roles.jsonl", field),
                timeout,
            )
    inventory = ROOT / "guard/causalguard/data/inventories/schwartz-basic-10.yaml"
    base = inventory.read_text(encoding="utf-8") if inventory.is_file() else None
    if base is not None:
        import yaml

        doc = yaml.safe_load(base)
        for _ in range(40):
            mutated = json.loads(json.dumps(doc))
            where = rng.choice(["name", "version", "dimension", "item", "polarity", "statement"])
            value = rng.choice(HOSTILE_SCALARS)
            dims = mutated.get("dimensions") or []
            if where in ("name", "version"):
                mutated[where] = value
            elif dims:
                dim = rng.choice(dims)
                items = dim.get("items") or []
                if where == "dimension":
                    dim["name"] = value
                elif items:
                    item = rng.choice(items)
                    item[{"item": "id", "polarity": "polarity", "statement": "text"}[where]] = value
            file = tmp / "inventory.yaml"
            file.write_text(yaml.safe_dump(mutated, allow_unicode=True), encoding="utf-8")
            yield run_case(
                "files",
                f"inventory.{where} = {json.dumps(value, allow_nan=True)[:40]}",
                lambda file=file: load_inventory(file).name,
                ("inventory.yaml",),
                timeout,
            )
    for name, data in {
        "jsonl duplicate keys": b'{"id": "a", "id": "b", "text": "x"}\n',
        "jsonl deep nesting": b"[" * 100_000 + b"]" * 100_000 + b"\n",
        "jsonl not utf-8": b'{"id": "\xff"}\n',
        "jsonl NaN": b'{"id": "a", "text": NaN}\n',
        "jsonl two objects on a line": b'{"id": "a", "text": "x"} {"id": "b"}\n',
    }.items():
        file = tmp / "raw.jsonl"
        file.write_bytes(data)
        yield run_case(
            "files", name, lambda file=file: f"{len(load_prompts(file).prompts)} prompts", ("raw.jsonl",), timeout
        )


# ---------------------------------------------------------------- bundles
def bundle_cases(rng: random.Random, tmp: Path, timeout: float) -> Iterator[Outcome]:
    from causalguard.bundle.format import load_bundle, shipped_bundle_dir
    from causalguard.bundle.integrity import seal_bundle

    shipped = shipped_bundle_dir("smollm2-135m-instruct")
    names = ("bundle.json", "effects.safetensors", "catalog.json", "behaviour.json", "judge.json", "held_out.json")
    for index in range(60):  # byte flips, not resealed: the content hashes must name the file
        folder = tmp / f"flip{index}"
        shutil.copytree(shipped, folder)
        name = rng.choice(names)
        data = bytearray((folder / name).read_bytes())
        offset = rng.randrange(len(data))
        data[offset] ^= 1 << rng.randrange(8)
        (folder / name).write_bytes(bytes(data))
        yield run_case(
            "bundle", f"flip {name}@{offset}", lambda folder=folder: str(load_bundle(folder).path), (name,), timeout
        )
        shutil.rmtree(folder)
    catalog_doc = json.loads((shipped / "catalog.json").read_text())
    paths: list[tuple[Any, ...]] = [
        ("noise_threshold",),
        ("baseline",),
        ("dimensions",),
        ("model", "fingerprint"),
        ("levers", 0, "strength"),
        ("levers", 0, "kind"),
        ("levers", 0, "target"),
        ("levers", 0, "replies", "verdict"),
        ("levers", 0, "replies", "n"),
        ("levers", 0, "replies", "effects"),
        ("levers", 0, "layer"),
        ("levers", 0, "id"),
    ]
    for path in paths:
        for value in rng.sample(HOSTILE_SCALARS, 5):
            folder = tmp / "resealed"
            shutil.copytree(shipped, folder)
            doc = json.loads(json.dumps(catalog_doc))
            node: Any = doc
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
            (folder / "catalog.json").write_text(json.dumps(doc, allow_nan=True))
            with contextlib.suppress(Exception):
                seal_bundle(folder)
            label = ".".join(str(p) for p in path)
            yield run_case(
                "bundle",
                f"resealed catalog {label} = {json.dumps(value, allow_nan=True)[:40]}",
                lambda folder=folder: str(load_bundle(folder).path),
                ("catalog.json",),
                timeout,
            )
            shutil.rmtree(folder)


# ---------------------------------------------------------------- CLI
def cli_cases(rng: random.Random, tmp: Path, timeout: float) -> Iterator[Outcome]:
    from typer.testing import CliRunner

    from causalguard.cli import app

    shipped = str(ROOT / "graphs/causalguard/graphs/smollm2-135m-instruct")
    bad_values = ["", "-1", "nan", "inf", "1e400", "2**70", "abc", "../..", "\x00", "🙂", str(2**70), "0"]
    templates = [
        ["graph", "show", "{v}"],
        ["levers", "show", "{v}"],
        ["graph", "predict", "--bundle", shipped, "--do", "{v}"],
        ["levers", "export", "--bundle", shipped, "--format", "{v}", "--out", str(tmp / "x")],
        ["levers", "export", "--bundle", "{v}", "--format", "llama-cpp-cvec", "--out", str(tmp / "x")],
        ["behaviour", "held-out", "{v}"],
        ["plan", "{v}"],
        ["serve", "--config", "{v}"],
        ["serve", "--config", str(ROOT / "deploy/guard.yaml"), "--port", "{v}"],
        ["serve", "--config", str(ROOT / "deploy/guard.yaml"), "--log-level", "{v}"],
        ["behaviour", "validate", "--config", str(ROOT / "deploy/guard.yaml"), "--prompts", "{v}"],
        ["behaviour", "validate", "--config", str(ROOT / "deploy/guard.yaml"), "--persona-seed", "{v}"],
        ["survey", "--model", "{v}"],
        ["sae", "train", "--layer", "{v}"],
    ]
    runner = CliRunner()
    for template in templates:
        for value in rng.sample(bad_values, 4):
            args = [a.replace("{v}", value) for a in template]

            def act(args: list[str] = args) -> str:
                result = runner.invoke(app, args, catch_exceptions=True)
                if result.exception is not None and not isinstance(result.exception, SystemExit):
                    raise result.exception
                if result.exit_code == 0:
                    return result.output[:80]
                raise SystemExit(result.exit_code)

            yield run_case("cli", " ".join(args)[:120], act, tuple(a for a in args if a.startswith("--")), timeout)


# ---------------------------------------------------------------- HTTP
def http_cases(rng: random.Random, tmp: Path, timeout: float) -> Iterator[Outcome]:
    from fastapi.testclient import TestClient

    from causalguard.metrics import GuardMetrics
    from causalguard.runtime.value_guard import ValueGuard
    from causalguard.server.app import create_app
    from tests.guard_fakes import GUARD_YAML, fake_bundle
    from tests.tiny_model import tiny_llama

    lm = tiny_llama()
    path = tmp / "guard.yaml"
    path.write_text(  # the tests' config, with room for the role lever's side effect (it plans without an SAE)
        GUARD_YAML.replace("achievement: {tolerance: 0.05}", "achievement: {tolerance: 0.5}")
        + "server:\n  max_tokens_limit: 32\n  max_prompt_tokens: 400\n"
    )

    def factory(sourced: Any, metrics: GuardMetrics) -> ValueGuard:
        return ValueGuard(lm.model, lm.tokenizer, sourced, bundle=fake_bundle(), metrics=metrics, start_audits=False)

    ok = {"model": "tiny-llama", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    fields = {
        "model": None,
        "messages": None,
        "max_tokens": None,
        "max_completion_tokens": None,
        "temperature": None,
        "top_p": None,
        "seed": None,
        "stop": None,
        "stream": None,
        "n": None,
        "profile": None,
        "interventions": None,
        "stream_options": None,
        "logit_bias": None,
        "tools": None,
        "response_format": None,
        "user": None,
    }
    with TestClient(create_app(path, guard_factory=factory)) as client:
        for _ in range(600):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        else:
            raise SystemExit(f"the sweep's server is not ready: {client.get('/readyz').json()}")
        for field in fields:
            for value in rng.sample(HOSTILE_SCALARS, 8):
                body = {**ok, field: value}

                def act(body: dict[str, Any] = body, field: str = field) -> str:
                    try:
                        payload = json.dumps(body, allow_nan=True)
                    except (TypeError, ValueError):
                        payload = str(body)
                    response = client.post(
                        "/v1/chat/completions", content=payload, headers={"content-type": "application/json"}
                    )
                    return _http_class(response, field)

                yield run_case("http", f"{field} = {json.dumps(value, allow_nan=True)[:40]}", act, (field,), timeout)
        message_values = [
            {"role": "tool", "content": "x"},
            {"role": "user"},
            {"role": "user", "content": None},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
            {"role": "user", "content": "x" * 200_000},
            {"role": "🙂", "content": "x"},
            {"role": "system", "content": "x"},
            {"role": "user", "content": "\x00"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            "hello",
            5,
        ]
        for message in message_values:
            body = {**ok, "messages": [message]}
            yield run_case(
                "http",
                f"messages[0] = {json.dumps(message)[:40]}",
                lambda body=body: _http_class(client.post("/v1/chat/completions", json=body), "messages"),
                ("messages",),
                timeout,
            )
        raw = {
            "not json": b"{not json",
            "empty": b"",
            "array": b"[]",
            "deep": b"[" * 50_000 + b"]" * 50_000,
            "huge": b'{"model": "' + b"x" * 2_000_000 + b'"}',
            "utf-16": json.dumps(ok).encode("utf-16"),
            "nan literal": b'{"model": "tiny-llama", "messages": [{"role": "user", "content": "Hi"}], '
            b'"temperature": NaN}',
        }
        for name, data in raw.items():
            yield run_case(
                "http",
                f"body: {name}",
                lambda data=data: _http_class(
                    client.post("/v1/chat/completions", content=data, headers={"content-type": "application/json"}),
                    "body",
                ),
                ("body",),
                timeout,
            )
        for name, headers in {
            "form content type": {"content-type": "application/x-www-form-urlencoded"},
            "bad auth scheme": {"authorization": "Basic x"},
            "smuggling": {"content-length": "5", "transfer-encoding": "chunked"},
        }.items():
            yield run_case(
                "http",
                f"headers: {name}",
                lambda headers=headers: _http_class(
                    client.post("/v1/chat/completions", json=ok, headers=headers), "headers"
                ),
                ("headers",),
                timeout,
            )


def _http_class(response: Any, field: str) -> str:
    status = response.status_code
    if status >= 500:
        raise Answer("traceback", f"{status} {response.text[:160]}")
    if status >= 400:
        try:
            error = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            raise Answer("vague_error", f"{status} not OpenAI-shaped: {response.text[:120]}") from None
        named = error.get("param") or ""
        klass = (
            "clear_error"
            if named
            or field in (error.get("message") or "")
            or field in ("body", "headers")
            or "request body" in (error.get("message") or "")  # 413: the whole body is the culprit
            else "vague_error"
        )
        raise Answer(klass, f"{status} param={named} {str(error.get('message'))[:120]}")
    return f"{status}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs/hostile-sweep.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--families", default="config,files,bundle,cli,http")
    args = parser.parse_args()
    import logging

    logging.disable(logging.CRITICAL)  # the sweep's own report is the output
    rng = random.Random(args.seed)
    generators = {
        "config": config_cases,
        "files": file_cases,
        "bundle": bundle_cases,
        "cli": cli_cases,
        "http": http_cases,
    }
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families.split(","):
            folder = Path(tmp) / family
            folder.mkdir()
            for outcome in generators[family](rng, folder, args.timeout):
                outcomes.append(outcome)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps([asdict(o) for o in outcomes], indent=1, ensure_ascii=False) + "\n")
    table = Counter((o.family, o.klass) for o in outcomes)
    classes = ["clear_error", "vague_error", "accepted", "traceback", "hang"]
    print(f"{len(outcomes)} cases (seed {args.seed}); report: {args.out}")
    print("| family | " + " | ".join(classes) + " |")
    print("|---|" + "---|" * len(classes))
    for family in dict.fromkeys(o.family for o in outcomes):
        print(f"| {family} | " + " | ".join(str(table[(family, k)]) for k in classes) + " |")
    for o in outcomes:
        if o.klass in ("traceback", "hang", "vague_error"):
            print(f"  {o.klass}: [{o.family}] {o.case} -> {o.detail}")


if __name__ == "__main__":
    main()
