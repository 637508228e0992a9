"""Generate-then-parse, the paper's method: a one-sentence thought, then yes or no (greedy).

``raw`` is +1 for yes, -1 for no, 0 when no answer can be parsed; ``score = polarity * raw``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from causalguard.models.batching import left_padded
from causalguard.models.loaded import LoadedModel
from causalguard.models.prompting import chat_text, encode_prefix
from causalguard.roles.role import Role
from causalguard.scoring.base import ItemAnswer
from causalguard.scoring.role_prompt import role_system_prompt
from causalguard.steering_conditions import SteeringCondition
from causalguard.values.inventory import Dimension, Item

QUESTION_TEMPLATE = "{question} First give your thought in one sentence, then answer with Yes or No."
_ANSWER = re.compile(r"answer\W{0,3}(yes|no)\b", re.IGNORECASE)
_WORD = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def parse_yes_no(text: str) -> int:
    """+1 for yes, -1 for no, 0 if neither: an explicit 'Answer: X' wins, else the last yes/no word."""
    match = _ANSWER.search(text)
    words = [match.group(1)] if match else _WORD.findall(text)
    if not words:
        return 0
    return 1 if words[-1].lower() == "yes" else -1


@dataclass(frozen=True)
class GenerateParse:
    name: ClassVar[str] = "generate"
    scale: ClassVar[str] = "agreement in [-1, 1]: polarity * (+1 yes, -1 no, 0 unparsed)"
    version: ClassVar[int] = 1
    batch_size: int = 16
    max_new_tokens: int = 100

    def score(
        self, lm: LoadedModel, role: Role, steering: SteeringCondition, items: Sequence[tuple[Dimension, Item]]
    ) -> list[ItemAnswer]:
        system = role_system_prompt(role, steering)
        prompts = [
            encode_prefix(lm.tokenizer, chat_text(lm.tokenizer, system, QUESTION_TEMPLATE.format(question=i.question)))
            for _, i in items
        ]
        texts: list[str] = []
        with steering.applied(lm.model), torch.inference_mode():
            for start in range(0, len(prompts), self.batch_size):
                texts.extend(self._generate(lm, prompts[start : start + self.batch_size]))
        answers = []
        for (dim, item), text in zip(items, texts, strict=True):
            raw = parse_yes_no(text)
            answers.append(
                ItemAnswer(
                    item_id=item.id,
                    dimension=dim.name,
                    polarity=item.polarity,
                    raw=float(raw),
                    score=float(item.polarity * raw),
                    text=text,
                )
            )
        return answers

    def _generate(self, lm: LoadedModel, prompts: list[list[int]]) -> list[str]:
        ids, mask = left_padded(prompts, lm.pad_token_id)
        width = ids.shape[1]
        out = lm.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            pad_token_id=lm.pad_token_id,
        )
        return [lm.tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]
