"""NumberLine: move the current number to the target with ``+`` and ``-``."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from PIL import Image, ImageDraw

from vlmq.envs.base import TextEnv, Transition
from vlmq.envs.gym_cards.parsing import normalize
from vlmq.envs.gym_cards.render import BLACK, WHITE, font, text_center, to_array


class NumberLine(TextEnv):
    """Positions ``0..max_position``; target and current number are drawn as text (300x300).

    Rewards: +1 on reaching the target (terminates), -1 when a move does not shrink the distance
    (moving away, or pushing against the end of the line, where the number stays put), else 0.
    Start differs from target. Truncated after ``2 * max_position`` turns (invalid turns count).
    """

    env_id: ClassVar[str] = "gym_cards/NumberLine"
    goal: ClassVar[str] = (
        "The image shows a target number and a current number. Move the current number to the "
        "target, one step at a time."
    )
    action_doc: ClassVar[str] = 'Valid actions: "+" (add 1 to the current number) or "-" (subtract 1).'
    action_example: ClassVar[str] = "+"

    def __init__(
        self,
        max_position: int = 5,
        invalid_penalty: float = -1.0,
        max_turns: int | None = None,
        state_in_text: bool = False,
    ) -> None:
        if max_position < 1:
            raise ValueError("max_position must be >= 1")
        super().__init__(invalid_penalty, 2 * max_position if max_turns is None else max_turns)
        self.max_position = int(max_position)
        self.state_in_text = state_in_text
        self.target = 0
        self.current = 0

    def _reset(self, options: dict[str, Any] | None) -> None:
        self.target = int(self.np_random.integers(0, self.max_position + 1))
        self.current = self.target
        while self.current == self.target:
            self.current = int(self.np_random.integers(0, self.max_position + 1))

    def _observe(self) -> tuple[np.ndarray, str]:
        im = Image.new("RGB", (300, 300), WHITE)
        d = ImageDraw.Draw(im)
        f = font(36)
        text_center(d, (150, 100), f"Target: {self.target}", f, BLACK)
        text_center(d, (150, 200), f"Current: {self.current}", f, BLACK)
        text = "The image shows the target and the current number."
        if self.state_in_text:
            text += f" Target: {self.target}. Current: {self.current}."
        return to_array(im), text

    def parse_env(self, text: str) -> str | None:
        s = normalize(text)
        return s if s in ("+", "-") else None

    def _apply(self, action: str) -> Transition:
        before = abs(self.current - self.target)
        step = 1 if action == "+" else -1
        self.current = min(max(self.current + step, 0), self.max_position)
        after = abs(self.current - self.target)
        if after == 0:
            return Transition(1.0, terminated=True, feedback="You reached the target.", strict_success=True)
        if after >= before:
            return Transition(-1.0, feedback="That move did not bring you closer to the target.")
        return Transition(0.0)

    def valid_actions(self) -> list[str]:
        return ["+", "-"]

    def expert_action(self) -> str:
        return "+" if self.target > self.current else "-"
