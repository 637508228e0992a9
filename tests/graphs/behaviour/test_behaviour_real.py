"""Reply quality on the real default model with its shipped bundle: the levers deploy/guard.yaml's default
profile was planned with before plans saw replies degrade, against plain replies, on held-out prompts."""

import pytest

from causalguard.adapters.hf.hooks import install_steering_hooks
from causalguard.adapters.hf.sae import load_sae
from causalguard.bundle.behaviour import load_behaviour
from causalguard.bundle.format import load_bundle, shipped_bundle_dir
from causalguard.graphs.behaviour.report import DEFAULT_SYSTEM_PROMPT, lever_reply_condition, served_system_prompt
from causalguard.judging.prompt_sets import Prompt, load_prompts
from causalguard.judging.reply_quality import reply_quality
from causalguard.models.loaded import LoadedModel
from causalguard.runtime import ValueGuard
from causalguard.runtime.generation import GenerationRow, chat_prompt_ids, generate_rows
from tests.repo_paths import ROOT

pytestmark = pytest.mark.slow
DEPLOY_YAML = ROOT / "deploy" / "guard.yaml"
# The plan deploy/guard.yaml's default profile got from survey effects alone (issue "Values as the chatbot
# says them"): a security role plus a security SAE feature, to raise benevolence.
OLD_DEFAULT_PLAN = ("role:security:+", "sae:f2547:+0.5")
# The six prompts these tests were written on: the first of the balanced test order then. They are dev now
# (sixth session), but not among the 20 dev prompts the quality range is calibrated on.
HELD_OUT = ("sdt01", "stt01", "het01", "act01", "pot01", "set01")


def _held_out_prompts() -> list[Prompt]:
    by_id = {p.id: p for p in load_prompts()}
    return [by_id[i] for i in HELD_OUT]


def test_the_old_default_plan_degrades_replies_and_plain_replies_do_not(lm: LoadedModel) -> None:
    folder = shipped_bundle_dir("smollm2-135m-instruct")
    bundle = load_bundle(folder, expected_fingerprint=lm.fingerprint)
    behaviour = load_behaviour(folder)
    assert bundle.catalog is not None and bundle.sae_dir is not None and behaviour is not None
    sae = load_sae(bundle.sae_dir, lm)
    prompts = _held_out_prompts()  # never used to calibrate
    levers = [lever_reply_condition(bundle.catalog.lever(i), sae, bundle.catalog) for i in OLD_DEFAULT_PLAN]
    instructions = tuple(i for c in levers for i in c.instructions)
    interventions = tuple(i for c in levers for i in c.interventions)
    rows = [
        GenerationRow(chat_prompt_ids(lm, p.messages(), DEFAULT_SYSTEM_PROMPT, instructions), interventions)
        for p in prompts
    ]
    rows += [GenerationRow(chat_prompt_ids(lm, p.messages(), DEFAULT_SYSTEM_PROMPT, ())) for p in prompts]
    with install_steering_hooks(lm.model, [sae.layer]):
        outs = generate_rows(lm, rows, max_new_tokens=64)
    texts = [lm.tokenizer.decode(o.tokens, skip_special_tokens=True).strip() for o in outs]
    systems = [served_system_prompt(DEFAULT_SYSTEM_PROMPT, instructions)] * 6 + [DEFAULT_SYSTEM_PROMPT] * 6
    quality = reply_quality(lm, [p.text for p in prompts] * 2, texts, systems=systems)
    flagged = [behaviour.calibration.degraded(q) for q in quality]
    guarded, plain = flagged[:6], flagged[6:]
    assert sum(guarded) >= 5, list(zip(texts[:6], guarded, strict=True))
    assert sum(plain) <= 1, list(zip(texts[6:], plain, strict=True))


def test_today_default_plan_avoids_degrading_levers_and_its_replies_stay_in_range(lm: LoadedModel) -> None:
    behaviour = load_behaviour(shipped_bundle_dir("smollm2-135m-instruct"))
    assert behaviour is not None
    prompts = _held_out_prompts()
    with ValueGuard(lm.model, lm.tokenizer, DEPLOY_YAML, name=lm.name, start_audits=False) as guard:
        plan = guard.plan()
        assert plan.levers and not any(behaviour.levers[lever.id].degrades_replies for lever in plan.levers)
        assert not set(OLD_DEFAULT_PLAN) <= {lever.id for lever in plan.levers}
        replies = guard.generate_batch([p.messages() for p in prompts], max_new_tokens=64)
    system = served_system_prompt(DEFAULT_SYSTEM_PROMPT, plan.role_instructions())
    quality = reply_quality(
        lm, [p.text for p in prompts], [r.text.strip() for r in replies], systems=[system] * len(prompts)
    )
    assert sum(behaviour.calibration.degraded(q) for q in quality) <= 1, [r.text for r in replies]
