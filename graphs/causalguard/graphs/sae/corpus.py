"""The SAE training corpus, produced here without downloading anything.

Two parts, both recorded in ``corpus.jsonl`` with their source:

- ``survey``: the exact contexts the survey scores (completion framing for every role, with each
  item's statement) and chat prompts with each role as system prompt and an item as the question, so
  the SAE sees the text its features will steer.
- ``generated``: the model's own sampled chat answers to diverse user prompts (everyday advice,
  dilemmas, stories, facts), under no role, personas or value roles.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from causalguard.models.loaded import LoadedModel
from causalguard.models.prompting import chat_text
from causalguard.roles.role import Role
from causalguard.scoring.statement import context_text
from causalguard.steering_conditions import NoSteering
from causalguard.values.inventory import Inventory

USER_PROMPTS: tuple[str, ...] = (
    "How should I spend a free Saturday?",
    "Write a short story about a lighthouse keeper.",
    "My friend borrowed money and has not paid it back. What should I do?",
    "Explain how rain forms.",
    "Should I take a higher-paying job in another city, away from my family?",
    "What makes a good leader?",
    "Give me three tips for saving money.",
    "Is it ever right to break a rule?",
    "Describe your ideal weekend.",
    "What do you think about tradition and holidays?",
    "How can I help my neighbours?",
    "Write a poem about the sea.",
    "What is photosynthesis?",
    "I found a wallet on the street. What now?",
    "How do I get promoted quickly at work?",
    "What is the most exciting thing a person can do?",
    "Should children always obey their parents?",
    "Why do people protect nature?",
    "Tell me about a famous inventor.",
    "How do I make pancakes?",
    "What would you do with a million dollars?",
    "How should a company treat its workers?",
    "Is it important to be rich?",
    "What does it mean to live a good life?",
    "Plan a trip somewhere adventurous.",
    "How can I stay safe when travelling alone?",
    "What is your opinion on following fashion trends?",
    "How do I deal with a rude colleague?",
    "Explain gravity to a child.",
    "What are the benefits of meditation?",
    "Write a letter thanking a teacher.",
    "Should I report a coworker who cheats?",
    "Why do some people love risk?",
    "How do I win an argument?",
    "What is democracy?",
    "Give advice to someone starting university.",
    "How important is religion in daily life?",
    "Describe a festival from your culture.",
    "What should I do if I see someone being bullied?",
    "How do I become more independent?",
    "What is the best way to learn a language?",
    "Should I spend money on experiences or things?",
    "How can cities reduce pollution?",
    "Tell me a joke.",
    "What are good manners at a dinner party?",
    "How do I ask for a raise?",
    "Why is honesty important?",
    "What does freedom mean to you?",
    "How do computers store data?",
    "Write a dialogue between a king and a farmer.",
    "What are the rules of chess?",
    "Should the government control prices?",
    "How do I make new friends?",
    "What is the meaning of respect?",
    "Describe a perfect meal.",
    "Why do people volunteer?",
)


@dataclass(frozen=True)
class CorpusText:
    source: str  # "survey" or "generated"
    text: str


def survey_texts(lm: LoadedModel, inventory: Inventory, roles: Sequence[Role], *, seed: int) -> list[CorpusText]:
    """Completion-framed statements and chat-framed questions for each role (a sample of items each)."""
    rng = random.Random(seed)
    items = [item for _, item in inventory.items()]
    out: list[CorpusText] = []
    for role in roles:
        for item in rng.sample(items, min(8, len(items))):
            out.append(CorpusText("survey", context_text(role, NoSteering()) + item.statement + '"'))
        for item in rng.sample(items, min(4, len(items))):
            out.append(CorpusText("survey", chat_text(lm.tokenizer, role.system_prompt, item.question)))
    return out


def generated_texts(
    lm: LoadedModel,
    roles: Sequence[Role],
    *,
    count: int,
    max_new_tokens: int,
    seed: int,
    batch_size: int = 16,
) -> list[CorpusText]:
    """The model's own sampled chat answers (prompt included), ``count`` of them."""
    import torch

    rng = random.Random(seed)
    prompts = [
        chat_text(lm.tokenizer, rng.choice([None, *[r.system_prompt for r in roles]]), rng.choice(USER_PROMPTS))
        for _ in range(count)
    ]
    tokenizer = lm.tokenizer
    tokenizer.padding_side = "left"
    torch.manual_seed(seed)
    out: list[CorpusText] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        encoded = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            generated = lm.model.generate(
                **encoded,
                max_new_tokens=max_new_tokens,
                do_sample=True,
                temperature=0.9,
                top_p=0.95,
                pad_token_id=lm.pad_token_id,
            )
        answers = tokenizer.batch_decode(generated[:, encoded.input_ids.shape[1] :], skip_special_tokens=True)
        out += [CorpusText("generated", p + a) for p, a in zip(batch, answers, strict=True)]
    return out


def write_corpus(path: Path, texts: Sequence[CorpusText]) -> None:
    with path.open("w") as f:
        for t in texts:
            f.write(json.dumps({"source": t.source, "text": t.text}) + "\n")


def read_corpus(path: Path) -> list[CorpusText]:
    return [CorpusText(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
