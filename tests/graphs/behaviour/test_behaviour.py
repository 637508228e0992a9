"""The behaviour subsystem on a tiny random model: prompt and labelled sets, the probe judge (against a
hand computation), reply quality, guarded generation and checkpointed reply runs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from causalguard import ConfigError
from causalguard.adapters.hf.hooks import decoder_layers, install_steering_hooks
from causalguard.adapters.hf.interventions import FeatureEdit, SaeIntervention
from causalguard.adapters.hf.sae import LoadedSae
from causalguard.graphs.behaviour.judge_fit import auroc, validate_judge
from causalguard.graphs.behaviour.replies import (
    REPLIES_FILE,
    Persona,
    ReplyCondition,
    ReplySettings,
    ReplyStore,
    RunMismatchError,
    run_replies,
)
from causalguard.judging.judge import FRAME_HEAD, FRAME_TAIL, ProbeJudge, ProbeWeights, load_probe_judge
from causalguard.judging.labelled import load_labelled
from causalguard.judging.prompt_sets import Prompt, load_prompts
from causalguard.judging.reply_quality import (
    QualityCalibration,
    ReplyQuality,
    compare_degradation,
    distinct,
    repetition,
    reply_quality,
)
from causalguard.metrics import GuardMetrics
from causalguard.models.loaded import LoadedModel
from causalguard.models.prompting import encode_continuation, encode_prefix
from causalguard.runtime import ValueGuard
from causalguard.runtime.generation import GenerationRow, chat_prompt_ids, generate_rows
from tests.guard_fakes import GUARD_YAML, fake_bundle_with_sae

DIMS = [
    "self_direction",
    "stimulation",
    "hedonism",
    "achievement",
    "power",
    "security",
    "conformity",
    "tradition",
    "benevolence",
    "universalism",
]
LOOP = (
    "The world of the family of the family of the family of the family of the family of the family of the "
    "family of the family of the family."
)
VARIED = [
    "Call your sister tonight and offer to help with the move; a free weekend matters less than family.",
    "Start with a budget: list your monthly costs, then put aside a little every payday before you spend.",
    "Try a short walk after lunch. It clears your head and makes the afternoon easier.",
    "Ask your manager for a quick meeting and bring two concrete ideas for the project.",
    "Write down what you want from the next five years, then pick one small step for this week.",
    "If the rule seems pointless, ask why it exists before you decide whether to follow it.",
    "Cook something simple you enjoy, invite a friend, and keep the evening relaxed.",
    "Read the contract twice, note every cost, and ask about anything that is unclear.",
    "Plant a few native flowers on the balcony; bees and butterflies will thank you.",
    "Keep a spare key with a neighbour you trust in case you get locked out.",
    "Listen first, then share your view calmly; most arguments cool down when people feel heard.",
    "Save a small emergency fund before investing, so a surprise bill does not become a crisis.",
]


# ---- prompt and labelled sets ---------------------------------------------------------------------
def test_shipped_prompt_set_covers_every_value_with_a_fixed_split() -> None:
    prompts = load_prompts(dimensions=DIMS)
    assert len(prompts) >= 240
    counts = prompts.counts()
    assert all(counts[d] >= 20 for d in DIMS)
    dev, test = prompts.split("dev"), prompts.split("test")
    assert len(dev) + len(test) == len(prompts) and not {p.id for p in dev} & {p.id for p in test}
    sample = dev.balanced(10)
    assert sorted(p.values[0] for p in sample) == sorted(DIMS)  # one per value first


def test_shipped_labelled_set_has_twenty_per_value_and_pole() -> None:
    texts = load_labelled(dimensions=DIMS)
    for d in DIMS:
        for pole in ("high", "low"):
            assert sum(t.value == d and t.pole == pole for t in texts) >= 20
    assert sum(t.pole == "neutral" for t in texts) >= 20


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ('{"id": "a", "text": "hi", "values": ["nope"]}', "values", "unknown value 'nope'"),
        ('{"id": "a b", "text": "hi"}', "id", "should match pattern"),
        ('{"id": "a", "text": ""}', "text", "at least 1 character"),
        ('{"id": "a", "text": "hi", "split": "train"}', "split", "'dev' or 'test'"),
        ('{"id": "a", "text": "hi", "colour": 1}', "colour", "Extra inputs"),
        ('{"id": "a", "text": "hi"', "", "invalid JSON"),
    ],
)
def test_bad_prompt_lines_name_file_line_and_field(tmp_path: Path, line: str, field: str, message: str) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"id": "ok", "text": "fine"}\n' + line + "\n")
    with pytest.raises(ConfigError) as err:
        load_prompts(path, dimensions=DIMS)
    problem = err.value.problems[0]
    assert problem.line == 2 and problem.field == field and message in problem.message
    assert str(path) in str(err.value)


def test_duplicate_prompt_ids_and_missing_split_and_latin1(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "x", "text": "a"}\n{"id": "x", "text": "b"}\n')
    with pytest.raises(ConfigError, match="duplicate id 'x' \\(first on line 1\\)"):
        load_prompts(path)
    path.write_text('{"id": "x", "text": "a"}\n{"id": "y", "text": "b"}\n')
    splits = {p.id: p.split for p in load_prompts(path)}
    assert splits == {p.id: p.split for p in load_prompts(path)} and set(splits.values()) <= {"dev", "test"}
    path.write_bytes('{"id": "x", "text": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_prompts(path)


# ---- the judge ------------------------------------------------------------------------------------
def _hand_features(lm: LoadedModel, text: str, layer: int) -> np.ndarray:
    head = encode_prefix(lm.tokenizer, FRAME_HEAD)
    body = encode_continuation(lm.tokenizer, text)
    ids = torch.tensor([head + body + encode_continuation(lm.tokenizer, FRAME_TAIL)])
    seen = {}
    handle = decoder_layers(lm.model)[layer].register_forward_hook(
        lambda m, a, out: seen.__setitem__("h", out[0] if isinstance(out, tuple) else out)
    )
    try:
        with torch.inference_mode():
            lm.model(input_ids=ids)
    finally:
        handle.remove()
    return seen["h"][0, len(head) : len(head) + len(body)].mean(0).numpy()


def test_probe_judge_matches_a_hand_computation(tiny_lm: LoadedModel) -> None:
    texts = VARIED[:6]
    values = ["power", "power", "benevolence", "benevolence", None, None]
    poles = ["high", "low", "high", "low", "neutral", "neutral"]
    feats = np.stack([_hand_features(tiny_lm, t, 1) for t in texts])
    weights = ProbeWeights.fit(["power", "benevolence"], 1, feats, values, poles)
    judge = ProbeJudge(tiny_lm, weights, batch_size=4)  # batches of different lengths: left padding
    scores = judge.score(texts)
    z = (feats - feats.mean(0)) / (feats.std(0) + 1e-6)
    for k, (hi, lo) in enumerate([(0, 1), (2, 3)]):
        w, mid = z[hi] - z[lo], (z[hi] + z[lo]) / 2
        expected = 2 * (z - mid) @ w / (w @ w)
        np.testing.assert_allclose(scores[:, k], expected, atol=2e-3)
        assert scores[hi, k] == pytest.approx(1.0, abs=2e-3) and scores[lo, k] == pytest.approx(-1.0, abs=2e-3)
    assert all(not layer._forward_hooks for layer in decoder_layers(tiny_lm.model))


def test_judge_round_trips_and_rejects_bad_artifacts(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    feats = np.stack([_hand_features(tiny_lm, t, 0) for t in VARIED[:2]])
    judge = ProbeJudge(tiny_lm, ProbeWeights.fit(["power"], 0, feats, ["power", "power"], ["high", "low"]))
    judge.save(tmp_path, {"validation": {}})
    again = load_probe_judge(tmp_path, tiny_lm)
    np.testing.assert_allclose(again.score(VARIED[:3]), judge.score(VARIED[:3]), atol=1e-5)
    doc = json.loads((tmp_path / "judge.json").read_text())
    (tmp_path / "judge.json").write_text(json.dumps({**doc, "model": {"fingerprint": "other"}}))
    with pytest.raises(ConfigError, match=r"model\.fingerprint"):
        load_probe_judge(tmp_path, tiny_lm)
    (tmp_path / "judge.json").write_text(json.dumps(doc))
    (tmp_path / "judge.safetensors").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="cannot read the judge weights"):
        load_probe_judge(tmp_path, tiny_lm)
    with pytest.raises(ConfigError, match="has no value judge"):
        load_probe_judge(tmp_path / "nowhere", tiny_lm)


def test_auroc_and_validation_report_weak_values() -> None:
    assert auroc([2, 3], [0, 1]) == 1.0 and auroc([0], [1]) == 0.0 and auroc([1], [1]) == 0.5
    from causalguard.judging.labelled import LabelledText

    texts = [
        LabelledText(f"{v}{p}{i}", v, p, "t", "test") for v in ("a", "b") for p in ("high", "low") for i in range(3)
    ]
    scores = np.array([[1.0, 0.0]] * 3 + [[-1.0, 0.0]] * 3 + [[0.0, 0.1]] * 3 + [[0.0, 0.2]] * 3)
    report = validate_judge(scores, texts, ["a", "b"])
    assert report["per_value"]["a"]["auroc"] == 1.0 and not report["per_value"]["a"]["weak"]
    assert report["per_value"]["b"]["auroc"] == 0.0 and report["weak_values"] == ["b"]
    assert report["confusion"]["a:high"]["a"] == 1.0


# ---- reply quality --------------------------------------------------------------------------------
def test_repetition_and_distinct_separate_loops_from_varied_text() -> None:
    assert repetition(LOOP) > 0.5 and distinct(LOOP) < 0.5
    assert all(repetition(t) == 0.0 and distinct(t) == 1.0 for t in VARIED)


def test_calibration_flags_a_synthetic_loop_and_passes_varied_text() -> None:
    rng = np.random.default_rng(0)
    base = [
        ReplyQuality(
            repetition(t), distinct(t), float(8 + rng.random()), float(0.5 + 0.1 * rng.random()), len(t.split()), False
        )
        for t in VARIED * 3
    ]
    calibration = QualityCalibration.fit(base)
    loop = ReplyQuality(repetition(LOOP), distinct(LOOP), 3.0, 0.6, 20, False)
    assert set(calibration.flags(loop)) == {"repetition", "distinct2"}
    assert calibration.flags(ReplyQuality(0.0, 1.0, 8.5, 0.55, 15, False)) == []
    assert calibration.flags(ReplyQuality(0.0, 1.0, 8.5, 0.55, 1, False)) == ["empty"]
    assert calibration.flags(ReplyQuality(0.0, 1.0, 80.0, -0.5, 15, False)) == ["perplexity", "relevance"]
    # perplexity: the unsteered 97.5th percentile (< 9) times 1.5; a steered reply at 12 is fluent enough
    assert 9 * 1.5 >= calibration.max_perplexity > 8 * 1.5
    assert calibration.flags(ReplyQuality(0.0, 1.0, 12.0, 0.55, 15, False)) == []
    with pytest.raises(ValueError, match="at least 10"):
        QualityCalibration.fit(base[:3])
    worse = compare_degradation([True] * 8 + [False] * 2, [False] * 19 + [True])
    same = compare_degradation([True] + [False] * 9, [False] * 18 + [True] * 2)
    assert worse.is_degraded and not same.is_degraded and worse.rate == 0.8


def test_reply_quality_perplexity_and_relevance_match_full_forward_passes(tiny_lm: LoadedModel) -> None:
    from causalguard.judging.reply_quality import CONTENT_FREE_MESSAGE
    from causalguard.models.prompting import chat_text

    messages = ["How do I save money?", "Any tips for sleeping better?"]
    replies = ["Put a little aside every month.", "Keep a regular bedtime and avoid screens late at night."]
    got = reply_quality(tiny_lm, messages, replies, batch_size=2)

    def mean_lp(context: str, reply: str) -> float:
        ctx = encode_prefix(tiny_lm.tokenizer, context)
        rep = encode_continuation(tiny_lm.tokenizer, reply)
        with torch.inference_mode():
            logits = tiny_lm.model(input_ids=torch.tensor([ctx + rep])).logits[0].float()
        lp = torch.log_softmax(logits[len(ctx) - 1 : -1], -1).gather(1, torch.tensor(rep)[:, None])[:, 0]
        return float(lp.mean())

    for q, m, r in zip(got, messages, replies, strict=True):
        with_msg = mean_lp(chat_text(tiny_lm.tokenizer, None, m), r)
        free = mean_lp(chat_text(tiny_lm.tokenizer, None, CONTENT_FREE_MESSAGE), r)
        assert q.perplexity == pytest.approx(np.exp(-with_msg), rel=1e-3)
        assert q.relevance == pytest.approx(with_msg - free, abs=1e-3)
    empty = reply_quality(tiny_lm, ["Hi"], [""])[0]
    assert empty.words == 0 and empty.perplexity == float("inf")


# ---- guarded generation and reply runs ------------------------------------------------------------
ASK = [{"role": "user", "content": "What should I do with my life?"}]


@pytest.fixture
def guard(tiny_lm: LoadedModel, tiny_sae: LoadedSae, tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "guard.yaml"
    path.write_text(GUARD_YAML)
    with ValueGuard(
        tiny_lm.model, tiny_lm.tokenizer, path, bundle=fake_bundle_with_sae(tiny_sae.path), metrics=GuardMetrics()
    ) as g:
        yield g


def test_reply_runs_generate_exactly_what_the_guard_serves(
    guard: ValueGuard, tiny_lm: LoadedModel, tmp_path: Path
) -> None:
    """A reply run's conditions built from the guard's plans give ValueGuard.generate's tokens exactly."""
    state = guard.state
    system = state.config.system_prompt
    conditions = [
        ReplyCondition(p, tuple(state.plan(p).role_instructions()), state.interventions[p])
        for p in ("default", "kind", "plain")
    ]
    prompts = [Prompt("q1", ASK[0]["content"], (), "dev"), Prompt("q2", "How can I rest more?", (), "dev")]
    store = ReplyStore(tmp_path / "run", {"test": 1})
    replies = run_replies(
        tiny_lm, conditions, [Persona("op", system)], prompts, ReplySettings(max_new_tokens=8), store, batch_size=1
    )
    for c in conditions:
        for q in prompts:
            served = guard.generate(q.messages(), profile=c.id, max_new_tokens=8)
            assert replies[(c.id, "op", q.id)].text == served.text.strip()
            assert replies[(c.id, "op", q.id)].tokens == served.completion_tokens


def test_seeded_sampling_is_per_row_and_leaves_the_global_rng_alone(tiny_lm: LoadedModel, tiny_sae: LoadedSae) -> None:
    prompt = chat_prompt_ids(tiny_lm, ASK, None, ())
    other = chat_prompt_ids(tiny_lm, [{"role": "user", "content": "Hi there"}], None, ())
    torch.manual_seed(123)
    before = torch.get_rng_state()
    alone = generate_rows(tiny_lm, [GenerationRow(prompt, seed=5)], max_new_tokens=10, temperature=1.0)
    assert torch.equal(torch.get_rng_state(), before)
    with install_steering_hooks(tiny_lm.model, [tiny_sae.layer]):
        edit = (SaeIntervention(tiny_sae, (FeatureEdit(3, "add", 50.0),)),)
        mixed = generate_rows(
            tiny_lm,
            [GenerationRow(other, edit, seed=9), GenerationRow(prompt, seed=5)],
            max_new_tokens=10,
            temperature=1.0,
        )
    assert mixed[1].tokens == alone[0].tokens  # its own generator, whatever its batch neighbour does
    unseeded = {
        tuple(generate_rows(tiny_lm, [GenerationRow(prompt)], max_new_tokens=10, temperature=1.5)[0].tokens)
        for _ in range(4)
    }
    assert len(unseeded) > 1


def test_reply_run_resumes_exactly_after_a_cut_at_every_byte_of_its_last_line(
    tiny_lm: LoadedModel, tmp_path: Path
) -> None:
    conditions = [ReplyCondition("none"), ReplyCondition("role", ("Answer kindly.",))]
    prompts = [Prompt(f"q{i}", t, (), "dev") for i, t in enumerate(["Hi", "How do I relax?", "Plans?"])]
    personas = [Persona("op", None)]
    settings = ReplySettings(max_new_tokens=6)
    whole = run_replies(
        tiny_lm, conditions, personas, prompts, settings, ReplyStore(tmp_path / "a", {"v": 1}), batch_size=2
    )
    content = (tmp_path / "a" / REPLIES_FILE).read_bytes()
    lines = content.splitlines(keepends=True)
    head, last = b"".join(lines[:-1]), lines[-1]
    for cut in range(0, len(last), 7):
        folder = tmp_path / f"cut{cut}"
        store = ReplyStore(folder, {"v": 1})
        (folder / REPLIES_FILE).write_bytes(head + last[:cut])
        resumed = run_replies(tiny_lm, conditions, personas, prompts, settings, store, batch_size=2)
        assert resumed == whole
        assert len((folder / REPLIES_FILE).read_text().splitlines()) == len(whole)
    with pytest.raises(RunMismatchError, match="other settings"):
        ReplyStore(tmp_path / "a", {"v": 2})
    assert ReplyStore(tmp_path / "a", {"v": 2}, restart=True).load() == {}


def test_contrast_judge_matches_a_hand_computation(tiny_lm: LoadedModel) -> None:
    from causalguard.judging.judge import ContrastJudge, ValueDefinition

    value = ValueDefinition("power", "Power", "control over people", "no interest in control")
    framings = ('Advice from someone {stance} {value} ({definition}):\n"', 'A bot {stance} {value} said:\n"')
    judge = ContrastJudge(tiny_lm, [value], framings, batch_size=2)
    texts = ["Take charge of the meeting.", "Let others decide, and relax about it."]

    def mean_lp(context: str, text: str) -> float:
        ctx = encode_prefix(tiny_lm.tokenizer, context)
        body = encode_continuation(tiny_lm.tokenizer, text)
        with torch.inference_mode():
            logits = tiny_lm.model(input_ids=torch.tensor([ctx + body])).logits[0].float()
        lp = torch.log_softmax(logits[len(ctx) - 1 : -1], -1).gather(1, torch.tensor(body)[:, None])[:, 0]
        return float(lp.mean())

    expected = [
        sum(mean_lp(judge.context(f, value, True), t) - mean_lp(judge.context(f, value, False), t) for f in framings)
        / len(framings)
        for t in texts
    ]
    np.testing.assert_allclose(judge.score(texts)[:, 0], expected, atol=1e-4)
    assert judge.dimensions == ("power",)


def test_behaviour_report_refuses_unknown_lever_ids_before_any_work(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from causalguard.bundle.format import shipped_bundle_dir
    from causalguard.cli import app

    bundle = shipped_bundle_dir("smollm2-135m-instruct")
    result = CliRunner().invoke(
        app,
        [
            "behaviour",
            "report",
            "--bundle",
            str(bundle),
            "--levers",
            "role:power:-,role:nope:+",
            "--work",
            str(tmp_path / "w"),
        ],
    )
    assert result.exit_code != 0
    assert "unknown lever ids: role:nope:+" in str(result.exception) + result.output
    assert not (tmp_path / "w").exists()  # refused before generating anything
