"""First-person statement likelihood in completion framing (works on base and chat models).

Context (no chat template): ``Here is how {role description} describes themselves:\\n"`` followed by
the item's first-person statement. The item's raw value is the mean per-token log-probability of the
statement; ``score = polarity * raw``. With items balanced in polarity, a dimension's score is half
the mean log-prob of its pro statements minus its reversed ones (nats per token), so shifts that make
every statement likelier cancel. Scores compare conditions; their absolute level carries no meaning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from causalguard.models.loaded import LoadedModel
from causalguard.models.prompting import encode_continuation, encode_prefix
from causalguard.roles.role import Role
from causalguard.scoring.base import ItemAnswer
from causalguard.scoring.shared_prefix import continuation_logprobs
from causalguard.steering_conditions import SteeringCondition
from causalguard.values.inventory import Dimension, Item


def context_text(role: Role, steering: SteeringCondition) -> str:
    note = steering.prompt_note()
    head = f"{note}\n" if note else ""
    return f'{head}Here is how {role.description} describes themselves:\n"'


@dataclass(frozen=True)
class StatementContrast:
    name: ClassVar[str] = "statement"
    scale: ClassVar[str] = "nats/token: polarity * centred mean log P(statement | role context); compare conditions"
    version: ClassVar[int] = 2
    batch_size: int = 32
    reuse_prefix: bool = True

    def score(
        self, lm: LoadedModel, role: Role, steering: SteeringCondition, items: Sequence[tuple[Dimension, Item]]
    ) -> list[ItemAnswer]:
        prefix = encode_prefix(lm.tokenizer, context_text(role, steering))
        continuations = [encode_continuation(lm.tokenizer, item.statement) for _, item in items]
        with steering.applied(lm.model):
            logprobs = continuation_logprobs(
                lm.model,
                prefix,
                continuations,
                pad_id=lm.pad_token_id,
                batch_size=self.batch_size,
                reuse_prefix=self.reuse_prefix,
            )
        raws = [float(lp.mean()) for lp in logprobs]
        centre = sum(raws) / len(raws) if raws else 0.0
        return [
            ItemAnswer(
                item_id=item.id,
                dimension=dim.name,
                polarity=item.polarity,
                raw=raw,
                score=item.polarity * (raw - centre),
            )
            for (dim, item), raw in zip(items, raws, strict=True)
        ]
