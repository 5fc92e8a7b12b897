"""The environment protocol shared by every domain.

A :class:`TextEnv` is a gymnasium ``Env`` whose actions are free text written by a VLM. Observations are
``{"image": uint8 HxWx3, "text": str}``. ``step(action_text)`` never raises on bad text: text that
does not parse is an *invalid action*, the state does not change, and the agent receives
``invalid_penalty`` plus feedback saying so.

Subclasses implement four small hooks:

- ``_reset() -> None``            set up a new episode using ``self.np_random``;
- ``_observe() -> (image, text)``  render the current state;
- ``parse_env(text) -> action | None``  map action text to a concrete action (``None`` = invalid);
- ``_apply(action) -> Transition``  apply a *valid* action.

and, for scripted data collection, ``valid_actions()`` (action strings a random agent picks from)
and ``expert_action()`` (the scripted expert's next action string).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

Observation = dict[str, Any]


@dataclass
class Transition:
    """What a valid action did to the environment."""

    reward: float
    terminated: bool = False
    truncated: bool = False
    feedback: str = ""
    strict_success: bool = False


@dataclass(frozen=True)
class TaskInfo:
    """Static description of a task, used by prompts and the CLI."""

    env_id: str
    goal: str
    action_doc: str
    action_example: str
    extra: dict[str, Any] = field(default_factory=dict)


class TextEnv(gym.Env[Observation, str]):
    """Base class of every vlmq environment (see module docstring)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}
    env_id: ClassVar[str] = ""
    goal: ClassVar[str] = ""
    action_doc: ClassVar[str] = ""
    action_example: ClassVar[str] = ""
    image_shape: ClassVar[tuple[int, int, int]] = (300, 300, 3)

    def __init__(self, invalid_penalty: float = -1.0, max_turns: int | None = None) -> None:
        super().__init__()
        self.invalid_penalty = float(invalid_penalty)
        self.max_turns = max_turns
        self.render_mode = "rgb_array"
        self.observation_space = gym.spaces.Dict(
            {
                "image": gym.spaces.Box(0, 255, shape=self.image_shape, dtype=np.uint8),
                "text": gym.spaces.Text(max_length=8192),
            }
        )
        self.action_space = gym.spaces.Text(max_length=4096)
        self._turn = 0
        self._return = 0.0
        self._last_feedback = ""
        self._last_obs: Observation | None = None

    # ----------------------------------------------------------------- hooks for subclasses
    def _reset(self, options: dict[str, Any] | None) -> None:
        raise NotImplementedError

    def _observe(self) -> tuple[np.ndarray, str]:
        raise NotImplementedError

    def parse_env(self, text: str) -> Any | None:
        """Map action text to a concrete action, or ``None`` when it is not a valid action."""
        raise NotImplementedError

    def _apply(self, action: Any) -> Transition:
        raise NotImplementedError

    def valid_actions(self) -> list[str]:
        """Action strings that are valid now (what a uniform random agent chooses from)."""
        raise NotImplementedError

    def expert_action(self) -> str:
        """The scripted expert's next action string."""
        raise NotImplementedError

    def random_action(self) -> str:
        """A uniformly random valid action, drawn from the env's own RNG."""
        acts = self.valid_actions()
        return acts[int(self.np_random.integers(len(acts)))]

    def noisy_expert_action(self, epsilon: float) -> str:
        """The expert's action, replaced by a random valid one with probability ``epsilon``."""
        if self.np_random.random() < epsilon:
            return self.random_action()
        return self.expert_action()

    def scripted_action(self, policy: str, epsilon: float = 0.0) -> str:
        """Dispatch by policy name: ``random``, ``expert`` or ``noisy`` (epsilon-noisy expert)."""
        if policy == "random":
            return self.random_action()
        if policy == "expert":
            return self.expert_action()
        if policy == "noisy":
            return self.noisy_expert_action(epsilon)
        raise ValueError(f"unknown scripted policy {policy!r}; choose random, expert or noisy")

    @classmethod
    def task_info(cls) -> TaskInfo:
        return TaskInfo(cls.env_id, cls.goal, cls.action_doc, cls.action_example)

    # ----------------------------------------------------------------- gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]:
        super().reset(seed=seed)
        self._turn = 0
        self._return = 0.0
        self._last_feedback = ""
        self._reset(options)
        obs = self._make_obs()
        return obs, {"feedback": "", "valid": True, "success": False, "strict_success": False}

    def step(self, action: str) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        if not isinstance(action, str):
            action = "" if action is None else str(action)
        try:
            parsed = self.parse_env(action)
        except Exception:  # a parser bug must never crash a rollout: treat as invalid
            parsed = None
        self._turn += 1
        if parsed is None:
            tr = Transition(
                reward=self.invalid_penalty,
                feedback=f"Invalid action {action.strip()[:80]!r}. {self.action_doc}",
            )
            valid = False
        else:
            tr = self._apply(parsed)
            valid = True
        truncated = tr.truncated
        if self.max_turns is not None and self._turn >= self.max_turns and not tr.terminated:
            truncated = True
        self._return += tr.reward
        self._last_feedback = tr.feedback
        done = tr.terminated or truncated
        info = {
            "valid": valid,
            "parsed_action": None if parsed is None else self.format_action(parsed),
            "feedback": tr.feedback,
            "episode_return": self._return,
            "success": bool(done and self._return > 0),
            "strict_success": bool(tr.strict_success),
            "turn": self._turn,
        }
        obs = self._make_obs()
        return obs, float(tr.reward), bool(tr.terminated), bool(truncated), info

    def format_action(self, action: Any) -> str:
        """Canonical text of a parsed action (stored in datasets)."""
        return str(action)

    def render(self) -> np.ndarray:
        assert self._last_obs is not None, "call reset() first"
        return self._last_obs["image"]

    def _make_obs(self) -> Observation:
        image, text = self._observe()
        if self._last_feedback:
            text = f"{text}\nFeedback: {self._last_feedback}"
        image = np.ascontiguousarray(image, dtype=np.uint8)
        self._last_obs = {"image": image, "text": text}
        return self._last_obs
