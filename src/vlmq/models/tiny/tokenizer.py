"""The tiny models' tokenizer: a byte-level BPE trained offline (~0.1 s) on domain text."""

from __future__ import annotations

from typing import Any


def domain_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on, so prompts and actions tokenize compactly."""
    from vlmq.models.prompts import format_response

    ranks = ["ace", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    ranks += ["jack", "queen", "king", "A", "J", "Q", "K"]
    suits = ["hearts", "spades", "clubs", "diamonds"]
    actions = ["+", "-", "hit", "stand", "left", "right", "forward", "pickup", "drop", "toggle", "done"]
    actions += [f"click(ref={i})" for i in range(40)] + [f"click(x={i * 10}, y={i * 7})" for i in range(20)]
    actions += [f'type(ref={i}, text="hello")' for i in range(10)]
    actions += ["1+2*3=7", "(3+5)*3=24", "12=4*3", "24=(8-2)*4", "=", "*", "/", "(", ")"]
    lines = [" ".join(str(i) for i in range(100))]
    lines += [f"{r} of {s}" for r in ranks for s in suits]
    lines += [format_response(a) for a in actions]
    lines += [format_response(a, thoughts=f"I should do {a} now.") for a in actions[:30]]
    lines += [
        "You are playing a game. Your goal: reach the target number. Current number: 3. Target number: 7.",
        "Actions: answer with one of the actions below. Example of a valid answer:",
        "Observation: the dealer shows a king; your cards are a seven and a nine (total 16).",
        "Answer with a JSON object and nothing else. Invalid action. Feedback: the formula is incomplete.",
        "go to the red ball. pick up the blue key. open the yellow door. put the box next to the ball.",
        "Click on the button labelled OK. Elements: [ref=3] button 'OK' [ref=5] input text [ref=7] link",
        "What do you see in the image? I see a red square on a green background with white cards.",
        "The quick brown fox jumps over the lazy dog. Move left, move right, pick up the key.",
    ]
    return lines * 4


def make_tokenizer(
    special_tokens: list[str],
    vocab_size: int = 1024,
    corpus: list[str] | None = None,
    **named_specials: Any,
) -> Any:  # PreTrainedTokenizerFast
    """Train a byte-level BPE (~0.1 s) on ``corpus`` (default :func:`domain_corpus`) and wrap it as a
    HF fast tokenizer.

    ``special_tokens`` each get one id; ``named_specials`` are ``bos_token``, ``eos_token`` ... and
    ``extra_special_tokens``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(domain_corpus() if corpus is None else corpus, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **named_specials)
