"""Reply quality, measured on the replies themselves, with thresholds calibrated on unsteered replies.

Per reply (``reply_quality``):

- ``repetition``: share of the reply's word 4-grams that repeat an earlier 4-gram (loops score high).
- ``distinct2``: distinct word bigrams over all bigrams (loops and stutters score low).
- ``perplexity``: of the reply under the model *without SAE edits*, given the conversation as it was
  served (its system prompt, role-lever instructions included, and the user's message). Role levers
  change what is likely; scoring a role reply without its instructions would call fluent text
  "unlikely", so the context is the served one and only SAE edits are left out.
- ``relevance``: mean log-probability per token of the reply given the user's message minus given a
  content-free message under the same system prompt (pointwise mutual information, nats/token):
  replies that ignore the message score near or below 0.
- ``words`` (empty when under ``MIN_WORDS``) and ``refusal`` (a canned refusal phrase).
- ``recited``: distinct word trigrams of the served system prompt (role-lever wordings included) that
  the reply repeats and the user's message does not hold: replies that recite their instruction
  ("here's an answer based on the value of ...") score high, whatever their fluency.
- ``sameness`` (``cross_prompt_sameness``, set by runs that hold a lever's replies to many prompts):
  the reply's highest word-bigram Jaccard similarity with the same lever's replies to *other* user
  messages under the same persona: a lever that gives every user the same speech scores high.

``QualityCalibration.fit`` takes unsteered replies and keeps the edges of their own 95% range
(2.5th/97.5th percentiles, on the side where quality is worse). Perplexity is the exception: greedy
unsteered replies are the model's most likely text (SmolLM2: median 2.2), so *any* lever that changes
what is said raises it, fluent or not (fluent steered replies read here sat at 2.7-3.2); its ceiling is
the unsteered 97.5th percentile times ``PERPLEXITY_MARGIN`` (1.5, the catalog's default fluency cap),
which still flags text the model finds implausible, while loops are caught by repetition. A reply is
*degraded* when it is empty, a refusal where the unsteered model did not refuse, or outside the range
on any metric.
``compare_degradation`` tells whether a set of steered replies is degraded more often than the
unsteered ones (one-sided Fisher exact test).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from causalguard.adapters.hf.hooks import steer
from causalguard.models.loaded import LoadedModel
from causalguard.models.prompting import chat_text, encode_continuation, encode_prefix
from causalguard.scoring.shared_prefix import continuation_logprobs

MIN_WORDS = 3
PERPLEXITY_MARGIN = 1.5
CONTENT_FREE_MESSAGE = "Say something."
_WORD = re.compile(r"[\w']+")
_REFUSAL = re.compile(
    r"\b(I can(?:no|')t (?:help|assist|answer)|I'm sorry, but I|as an AI( language model)?\b)", re.IGNORECASE
)


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def repetition(text: str, n: int = 4) -> float:
    """Share of word n-grams that repeat an earlier one (0 for replies shorter than n + 1 words)."""
    w = words(text)
    grams = [tuple(w[i : i + n]) for i in range(len(w) - n + 1)]
    if len(grams) < 2:
        return 0.0
    counts = Counter(grams)
    return sum(c - 1 for c in counts.values()) / len(grams)


def distinct(text: str, n: int = 2) -> float:
    """Distinct word n-grams over all n-grams (1 for replies too short to have two)."""
    w = words(text)
    grams = [tuple(w[i : i + n]) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if len(grams) >= 2 else 1.0


@dataclass(frozen=True)
class ReplyQuality:
    repetition: float
    distinct2: float
    perplexity: float
    relevance: float
    words: int
    refusal: bool
    recited: int = 0
    sameness: float = 0.0

    def as_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


def recited_trigrams(reply: str, system: str | None, message: str) -> int:
    """Distinct word trigrams of ``system`` that ``reply`` repeats and ``message`` does not contain."""
    if not system:
        return 0

    def grams(text: str) -> set[tuple[str, ...]]:
        w = words(text)
        return {tuple(w[i : i + 3]) for i in range(len(w) - 2)}

    return len((grams(system) & grams(reply)) - grams(message))


def _bigrams(text: str) -> set[tuple[str, str]]:
    w = words(text)
    return {(w[i], w[i + 1]) for i in range(len(w) - 1)}


def cross_prompt_sameness(replies: Sequence[str], groups: Sequence[str], prompts: Sequence[str]) -> list[float]:
    """Per reply, its highest word-bigram Jaccard similarity with replies of the same group (a lever and a
    persona) to other prompts (0 when the group answers one prompt only)."""
    if not len(replies) == len(groups) == len(prompts):
        raise ValueError("give one group and one prompt per reply")
    sets = [_bigrams(r) for r in replies]
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    out = [0.0] * len(replies)
    for idx in members.values():
        for i in idx:
            best = 0.0
            for j in idx:
                if prompts[j] == prompts[i] or not (sets[i] or sets[j]):
                    continue
                best = max(best, len(sets[i] & sets[j]) / len(sets[i] | sets[j]))
            out[i] = best
    return out


def _mean_logprobs(
    lm: LoadedModel, contexts: Sequence[str], replies: Sequence[list[int]], batch_size: int
) -> list[float]:
    """Mean per-token log-prob of each reply after its context, unsteered. Replies that share a context
    share its KV cache (one prefix pass per distinct context)."""
    out = [0.0] * len(replies)
    groups: dict[str, list[int]] = {}
    for i, context in enumerate(contexts):
        groups.setdefault(context, []).append(i)
    with steer(None):
        for context, members in groups.items():
            prefix = encode_prefix(lm.tokenizer, context)
            lps = continuation_logprobs(
                lm.model, prefix, [replies[i] for i in members], pad_id=lm.pad_token_id, batch_size=batch_size
            )
            for i, lp in zip(members, lps, strict=True):
                out[i] = float(lp.mean())
    return out


def reply_quality(
    lm: LoadedModel,
    messages: Sequence[str],
    replies: Sequence[str],
    *,
    systems: Sequence[str | None] | None = None,
    batch_size: int = 16,
    max_reply_tokens: int = 256,
) -> list[ReplyQuality]:
    """Quality of each reply to its user message under ``lm`` without SAE edits; ``systems`` gives
    each reply's served system prompt (None: the chat template's default)."""
    if len(messages) != len(replies):
        raise ValueError("give one user message per reply")
    systems = list(systems) if systems is not None else [None] * len(replies)
    if len(systems) != len(replies):
        raise ValueError("give one system prompt (or None) per reply")
    tokens = [encode_continuation(lm.tokenizer, r)[:max_reply_tokens] for r in replies]
    scored = [i for i, t in enumerate(tokens) if t]
    bodies = [tokens[i] for i in scored]
    lp_msg = _mean_logprobs(lm, [chat_text(lm.tokenizer, systems[i], messages[i]) for i in scored], bodies, batch_size)
    lp_free = _mean_logprobs(
        lm, [chat_text(lm.tokenizer, systems[i], CONTENT_FREE_MESSAGE) for i in scored], bodies, batch_size
    )
    ppl = dict.fromkeys(range(len(replies)), math.inf)
    rel = dict.fromkeys(range(len(replies)), 0.0)
    for k, i in enumerate(scored):
        ppl[i] = float(math.exp(min(50.0, -lp_msg[k])))
        rel[i] = lp_msg[k] - lp_free[k]
    return [
        ReplyQuality(
            repetition(r),
            distinct(r),
            ppl[i],
            rel[i],
            len(words(r)),
            bool(_REFUSAL.search(r)),
            recited_trigrams(r, systems[i], messages[i]),
        )
        for i, r in enumerate(replies)
    ]


def text_quality(message: str, reply: str, system: str | None) -> ReplyQuality:
    """The metrics read from the text alone (no model pass): repetition, distinct bigrams, words, refusal
    and recitation. ``perplexity`` and ``relevance`` are NaN (not measured), which no threshold flags."""
    return ReplyQuality(
        repetition(reply),
        distinct(reply),
        math.nan,
        math.nan,
        len(words(reply)),
        bool(_REFUSAL.search(reply)),
        recited_trigrams(reply, system, message),
    )


@dataclass(frozen=True)
class QualityCalibration:
    """The unsteered model's own 95% range on each metric, from ``n`` unsteered replies."""

    n: int
    max_repetition: float
    min_distinct2: float
    max_perplexity: float
    min_relevance: float
    refusal_rate: float
    degraded_rate: float  # share of the calibration replies themselves flagged (about 5-10% by design)
    max_recited: int = 1 << 30  # calibrations written before recitation was measured flag none
    max_sameness: float = math.inf

    @classmethod
    def fit(cls, qualities: Sequence[ReplyQuality]) -> QualityCalibration:
        if len(qualities) < 10:
            raise ValueError(f"calibrating reply quality needs at least 10 unsteered replies, got {len(qualities)}")
        finite_ppl = [q.perplexity for q in qualities if math.isfinite(q.perplexity)]
        calib = cls(
            n=len(qualities),
            max_repetition=float(np.quantile([q.repetition for q in qualities], 0.975)),
            min_distinct2=float(np.quantile([q.distinct2 for q in qualities], 0.025)),
            max_perplexity=float(np.quantile(finite_ppl, 0.975)) * PERPLEXITY_MARGIN if finite_ppl else math.inf,
            min_relevance=float(np.quantile([q.relevance for q in qualities], 0.025)),
            refusal_rate=float(np.mean([q.refusal for q in qualities])),
            degraded_rate=0.0,
            # at least 1 trigram may recur by chance ("you are a"); more than the unsteered range recites
            max_recited=max(1, int(np.quantile([q.recited for q in qualities], 0.975))),
            max_sameness=max(0.2, float(np.quantile([q.sameness for q in qualities], 0.975))),
        )
        rate = float(np.mean([bool(calib.flags(q)) for q in qualities]))
        return cls(**{**asdict(calib), "degraded_rate": rate})

    def flags(self, q: ReplyQuality) -> list[str]:
        """Why a reply is degraded (empty list: within the unsteered range)."""
        out = []
        if q.words < MIN_WORDS:
            out.append("empty")
        if q.refusal and self.refusal_rate < 0.5:
            out.append("refusal")
        if q.repetition > self.max_repetition:
            out.append("repetition")
        if q.distinct2 < self.min_distinct2:
            out.append("distinct2")
        if q.perplexity > self.max_perplexity:
            out.append("perplexity")
        if q.relevance < self.min_relevance:
            out.append("relevance")
        if q.recited > self.max_recited:
            out.append("recites_instruction")
        if q.sameness > self.max_sameness:
            out.append("same_speech")
        return out

    def degraded(self, q: ReplyQuality) -> bool:
        return bool(self.flags(q))

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class Degradation:
    degraded: int
    n: int
    baseline_degraded: int
    baseline_n: int
    p_value: float  # one-sided Fisher exact: steered degraded more often than unsteered
    alpha: float = 0.05

    @property
    def rate(self) -> float:
        return self.degraded / self.n if self.n else 0.0

    @property
    def baseline_rate(self) -> float:
        return self.baseline_degraded / self.baseline_n if self.baseline_n else 0.0

    @property
    def is_degraded(self) -> bool:
        return self.p_value < self.alpha

    def as_dict(self) -> dict[str, float | int | bool]:
        return {
            "degraded": self.degraded,
            "n": self.n,
            "rate": self.rate,
            "baseline_degraded": self.baseline_degraded,
            "baseline_n": self.baseline_n,
            "baseline_rate": self.baseline_rate,
            "p_value": self.p_value,
            "is_degraded": self.is_degraded,
        }


def compare_degradation(steered: Sequence[bool], unsteered: Sequence[bool], alpha: float = 0.05) -> Degradation:
    """Is ``steered`` (one flag per reply) degraded more often than ``unsteered``? One-sided Fisher exact."""
    from scipy.stats import fisher_exact

    k, n = int(sum(steered)), len(steered)
    k0, n0 = int(sum(unsteered)), len(unsteered)
    if n == 0 or n0 == 0:
        raise ValueError("compare_degradation needs replies on both sides")
    _, p = fisher_exact([[k, n - k], [k0, n0 - k0]], alternative="greater")
    return Degradation(k, n, k0, n0, float(p), alpha)
