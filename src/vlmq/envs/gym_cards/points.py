"""EZPoints and Points24: build a formula from the cards' values that equals a target.

One class, :class:`PointsEnv`, parameterised by class attributes (target, number of cards, allowed
operators, formula length limit, whether only solvable hands are dealt); the two tasks set them.

An action appends one token to the formula: a number ``1..10`` (ace = 1, J/Q/K = 10) or an
operator. ``=`` submits: +10 when the formula evaluates exactly to the target and uses every card
(terminates, strict success), else -1 (terminates). A number that is not on the cards, or whose
cards are all used already, is a *valid but bad* action: -1, the formula is unchanged, feedback says
why (it is a legal move of the game, unlike text that does not parse, which is an *invalid* action
scored by the base class). A formula longer than ``max_formula_len`` tokens truncates the episode.
Two numbers side by side never concatenate (``"3 4"`` is malformed, unlike the original's ``"34"``).

Expert: the formula solver (:func:`formula.solutions`, cached by sorted card values) lists all
solutions; the expert presses ``=`` when the formula is already correct, otherwise extends it along
the simplest solution that starts with the current formula; when none does (an unsolvable hand or a
formula spoilt by noise) it presses ``=`` at once and takes the -1.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import numpy as np
from PIL import Image, ImageDraw

from vlmq.envs.base import TextEnv, Transition
from vlmq.envs.gym_cards.formula import evaluate, solutions
from vlmq.envs.gym_cards.parsing import normalize
from vlmq.envs.gym_cards.render import BLACK, SUIT_GLYPHS, SUITS, WHITE, font, paste_row, rank_label, to_array

Card = tuple[int, str]
NUMBERS: tuple[str, ...] = tuple(str(v) for v in range(1, 11))


class PointsEnv(TextEnv):
    """Shared implementation of the Points games (see module docstring)."""

    target: ClassVar[int] = 24
    num_cards: ClassVar[int] = 4
    ops: ClassVar[str] = "+-*/()"
    max_formula_len: ClassVar[int] = 20
    solvable_only: ClassVar[bool] = False
    card_size: ClassVar[tuple[int, int]] = (64, 90)

    def __init__(
        self, invalid_penalty: float = -1.0, max_turns: int | None = 50, state_in_text: bool = False
    ) -> None:
        super().__init__(invalid_penalty, max_turns)
        self.state_in_text = state_in_text
        self.cards: list[Card] = []
        self.formula: list[str] = []

    # ------------------------------------------------------------------ state
    @property
    def values(self) -> list[int]:
        """Card values as numbers to type: ace 1, 2..10, J/Q/K 10."""
        return [min(rank, 10) for rank, _ in self.cards]

    @property
    def arith_ops(self) -> str:
        """The binary operators among the allowed tokens."""
        return "".join(c for c in self.ops if c in "+-*/")

    def _solutions(self) -> tuple[tuple[str, ...], ...]:
        return solutions(tuple(sorted(self.values)), self.target, self.arith_ops)

    def _reset(self, options: dict[str, Any] | None) -> None:
        self.formula = []
        while True:
            self.cards = [
                (int(self.np_random.integers(1, 14)), SUITS[int(self.np_random.integers(4))])
                for _ in range(self.num_cards)
            ]
            if not self.solvable_only or self._solutions():
                return

    def formula_text(self) -> str:
        return " ".join(self.formula)

    def _observe(self) -> tuple[np.ndarray, str]:
        im = Image.new("RGB", (300, 300), WHITE)
        w, h = self.card_size
        paste_row(im, list(self.cards), top=40, w=w, h=h)
        d = ImageDraw.Draw(im)
        d.text((10, 190), "Formula:", fill=BLACK, font=font(20))
        self._draw_formula(d, self.formula_text())
        shown = self.formula_text() or "(empty)"
        text = f"Current formula: {shown}"
        if self.state_in_text:
            cards = ", ".join(rank_label(r) + SUIT_GLYPHS[s] for r, s in self.cards)
            text = f"Cards: {cards}. {text}"
        return to_array(im), text

    @staticmethod
    def _draw_formula(d: ImageDraw.ImageDraw, text: str) -> None:
        """The formula under its label, shrunk (then wrapped) to fit 280 px."""
        for size in (24, 20, 16):
            f = font(size)
            if d.textlength(text, font=f) <= 280:
                d.text((10, 220), text, fill=BLACK, font=f)
                return
        f, lines, line = font(16), [], ""
        for tok in text.split(" "):
            if line and d.textlength(f"{line} {tok}", font=f) > 280:
                lines.append(line)
                line = tok
            else:
                line = f"{line} {tok}".strip()
        lines.append(line)
        for i, ln in enumerate(lines[:4]):
            d.text((10, 218 + 19 * i), ln, fill=BLACK, font=f)

    # ------------------------------------------------------------------ actions
    def parse_env(self, text: str) -> str | None:
        s = normalize(text)
        if s in NUMBERS or s == "=" or (len(s) == 1 and s in self.ops):
            return s
        return None

    def _apply(self, action: str) -> Transition:
        if action == "=":
            return self._submit()
        if action in NUMBERS:
            have = Counter(self.values)[int(action)]
            used = self.formula.count(action)
            if have == 0:
                return Transition(-1.0, feedback=f"There is no card worth {action}.")
            if used >= have:
                return Transition(-1.0, feedback=f"Every card worth {action} is already used.")
        self.formula.append(action)
        if len(self.formula) > self.max_formula_len:
            return Transition(0.0, truncated=True, feedback="The formula is too long.")
        return Transition(0.0)

    def _submit(self) -> Transition:
        text = self.formula_text()
        value = evaluate(text)
        numbers = sum(tok in NUMBERS for tok in self.formula)
        if value is None:
            why = f"the formula {text!r} is not a valid expression" if text else "the formula is empty"
        elif value != self.target:
            why = f"{text} = {value}, not {self.target}"
        elif numbers != self.num_cards:
            why = f"{text} = {self.target}, but every card must be used"
        else:
            return Transition(
                10.0, terminated=True, feedback=f"Correct: {text} = {self.target}.", strict_success=True
            )
        return Transition(-1.0, terminated=True, feedback=f"Wrong: {why}.")

    def is_correct(self) -> bool:
        """Whether pressing ``=`` now would win."""
        nums = sum(tok in NUMBERS for tok in self.formula)
        return nums == self.num_cards and evaluate(self.formula_text()) == self.target

    def valid_actions(self) -> list[str]:
        nums = sorted(set(self.values))
        return [str(v) for v in nums] + list(self.ops) + ["="]

    def expert_action(self) -> str:
        if self.is_correct():
            return "="
        n = len(self.formula)
        prefix = tuple(self.formula)
        for sol in self._solutions():
            if len(sol) > n and sol[:n] == prefix:
                return sol[n]
        return "="


class EZPoints(PointsEnv):
    """Two cards, target 12, tokens: numbers, ``+``, ``*``, ``=``; only solvable hands are dealt."""

    env_id: ClassVar[str] = "gym_cards/EZPoints"
    target: ClassVar[int] = 12
    num_cards: ClassVar[int] = 2
    ops: ClassVar[str] = "+*"
    max_formula_len: ClassVar[int] = 5
    solvable_only: ClassVar[bool] = True
    card_size: ClassVar[tuple[int, int]] = (80, 112)
    goal: ClassVar[str] = (
        "Build a formula that equals 12 from the two cards in the image, one token at a time, using "
        "each card exactly once. An ace counts 1; J, Q and K count 10. The current formula is given."
    )
    action_doc: ClassVar[str] = (
        'Valid actions: a number from 1 to 10 (a card\'s value), "+", "*", or "=" to submit the formula.'
    )
    action_example: ClassVar[str] = "+"


class Points24(PointsEnv):
    """Four cards, target 24, tokens: numbers, ``+ - * / ( )``, ``=``; some hands are unsolvable."""

    env_id: ClassVar[str] = "gym_cards/Points24"
    target: ClassVar[int] = 24
    num_cards: ClassVar[int] = 4
    ops: ClassVar[str] = "+-*/()"
    max_formula_len: ClassVar[int] = 20
    solvable_only: ClassVar[bool] = False
    card_size: ClassVar[tuple[int, int]] = (64, 90)
    goal: ClassVar[str] = (
        "Build a formula that equals 24 from the four cards in the image, one token at a time, using "
        "each card exactly once. An ace counts 1; J, Q and K count 10. The current formula is given."
    )
    action_doc: ClassVar[str] = (
        'Valid actions: a number from 1 to 10 (a card\'s value), "+", "-", "*", "/", "(", ")", or "=" '
        "to submit the formula."
    )
    action_example: ClassVar[str] = "("
