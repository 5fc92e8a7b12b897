"""Gym Cards: a clean-room re-implementation of the four RL4VLM card tasks.

``gym_cards/NumberLine``, ``gym_cards/Blackjack``, ``gym_cards/EZPoints`` and ``gym_cards/Points24``
are registered on import, and each also as ``<Task>-text`` (e.g. ``gym_cards/NumberLine-text``): the
same task with its state also written in the observation text (``state_in_text=True``), for learning
experiments that keep perception out of the way. Images (300x300 RGB) are drawn with PIL; no image assets are needed.
Every random draw comes from the env's own ``np_random``, so ``reset(seed=s)`` is reproducible.
"""

from functools import partial

from vlmq.envs.gym_cards.blackjack import Blackjack
from vlmq.envs.gym_cards.numberline import NumberLine
from vlmq.envs.gym_cards.points import EZPoints, Points24, PointsEnv
from vlmq.envs.registry import register

register(
    "gym_cards/NumberLine",
    NumberLine,
    "Move the current number to the target with + and - (vision: read two numbers).",
)
register("gym_cards/Blackjack", Blackjack, "Hit or stand against the dealer (infinite deck, +1/0/-1).")
register(
    "gym_cards/EZPoints", EZPoints, "Make 12 from two cards with numbers, + and * (solvable deals only)."
)
register(
    "gym_cards/Points24", Points24, "Make 24 from four cards with + - * / ( ) (not every deal is solvable)."
)

for _task, _cls in (("NumberLine", NumberLine), ("Blackjack", Blackjack), ("EZPoints", EZPoints),
                   ("Points24", Points24)):  # fmt: skip
    register(
        f"gym_cards/{_task}-text",
        partial(_cls, state_in_text=True),
        f"{_task} with its state also in the observation text (perception out of the way).",
    )

__all__ = ["Blackjack", "EZPoints", "NumberLine", "Points24", "PointsEnv"]
