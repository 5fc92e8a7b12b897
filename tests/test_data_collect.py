"""Collectors: a tiny fake TextEnv for exact checks, a fake batched policy, and a Gym Cards run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vlmq.data.store import EpisodeStore
from vlmq.envs.base import TextEnv, Transition
from vlmq.envs.registry import register
from vlmq.models.prompts import build_prompt, format_response
from vlmq.rollout import collect


class CountEnv(TextEnv):
    """Say ``go`` ``goal`` times (goal 1..3 from the seed); ``stop`` ends the episode with -1."""

    env_id = "fake/Count"
    goal = "Reach the goal count."
    action_doc = "Answer go or stop."
    action_example = "go"
    image_shape = (8, 8, 3)

    def _reset(self, options: dict[str, Any] | None) -> None:
        self.target = int(self.np_random.integers(1, 4))
        self.count = 0

    def _observe(self) -> tuple[np.ndarray, str]:
        img = np.zeros(self.image_shape, dtype=np.uint8)
        img[0, 0, 0] = self.count
        return img, f"count {self.count} of {self.target}"

    def parse_env(self, text: str) -> str | None:
        t = text.strip().lower()
        return t if t in ("go", "stop") else None

    def _apply(self, action: str) -> Transition:
        if action == "stop":
            return Transition(-1.0, terminated=True)
        self.count += 1
        done = self.count >= self.target
        return Transition(1.0 if done else 0.0, terminated=done, strict_success=done)

    def valid_actions(self) -> list[str]:
        return ["go", "stop"]

    def expert_action(self) -> str:
        return "go"


register("fake/Count", lambda **kw: CountEnv(max_turns=2, **kw), "test env")


@dataclass
class Gen:
    text: str
    token_ids: list[int]
    finished: bool = True


class FakePolicy:
    """Answers ``go`` in JSON on even counts, garbage on odd ones; records every generate call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float]] = []
        self.config = type("C", (), {"base_model": "fake"})()

    def generate(self, images: list[np.ndarray], prompts: list[str], **kw: Any) -> list[Gen]:
        assert len(images) == len(prompts)
        self.calls.append((len(prompts), kw["temperature"]))
        return [Gen('{"action": "go"}' if im[0, 0, 0] % 2 == 0 else "hmm", [1]) for im in images]


def test_scripted_collection_on_a_fake_env(tmp_path: Path) -> None:
    stats = collect(
        "fake/Count", "expert", 7, num_envs=3, asynchronous=False, seed=10, out=tmp_path / "ds",
        show_progress=False,
    )  # fmt: skip
    eps = sorted(EpisodeStore(tmp_path / "ds").iter_episodes(), key=lambda e: e.seed)
    assert [e.seed for e in eps] == list(range(10, 17))  # episode k uses seed base_seed + k
    task = CountEnv.task_info()
    for e in eps:
        env = CountEnv(max_turns=2)
        obs, _ = env.reset(seed=e.seed)
        assert e.turns[0].prompt == build_prompt(task, obs["text"])
        assert np.array_equal(e.turns[0].image, obs["image"])
        assert all(t.response == format_response("go") and t.action == "go" for t in e.turns)
        last = e.turns[-1]
        if env.target <= 2:  # reached within the turn limit
            assert last.terminated and not last.truncated and e.success
        else:  # 2 turns of the limit: truncated, bootstrap observation kept
            assert last.truncated and not last.terminated and not e.success
        assert e.final_prompt is not None and e.final_image is not None
        assert e.source == "expert" and e.env_id == "fake/Count"
    m = stats.metrics()
    assert m["episodes"] == 7 and m["valid_rate"] == 1.0
    assert m["success_rate"] == pytest.approx(sum(e.success for e in eps) / 7)


def test_model_collection_batches_one_generate_per_step(tmp_path: Path) -> None:
    policy = FakePolicy()
    stats = collect(
        "fake/Count", "model", 5, model=policy, num_envs=4, asynchronous=False, temperature=0.7,
        out=tmp_path / "ds", show_progress=False,
    )  # fmt: skip
    eps = list(EpisodeStore(tmp_path / "ds").iter_episodes())
    steps = sum(len(e.turns) for e in eps)
    assert sum(n for n, _ in policy.calls) == steps  # every turn came from exactly one batched call
    assert policy.calls[0][0] == 4 and max(n for n, _ in policy.calls) == 4
    assert len(policy.calls) < steps and all(t == 0.7 for _, t in policy.calls)
    invalid = [t for e in eps for t in e.turns if not t.valid]
    assert invalid and all(t.response == "hmm" and t.action is None for t in invalid)
    assert all(e.source == "model:fake" for e in eps)
    assert stats.metrics()["valid_rate"] == pytest.approx(1 - len(invalid) / steps)


def test_gym_cards_in_subprocess_workers(tmp_path: Path) -> None:
    stats = collect("gym_cards/EZPoints", "noisy", 4, epsilon=0.5, num_envs=2, asynchronous=True,
                    out=tmp_path / "ds", show_progress=False)  # fmt: skip
    store = EpisodeStore(tmp_path / "ds")
    assert store.stats()["sources"] == {"noisy:0.5": 4}
    assert stats.summary().startswith("episodes 4")
    assert sorted(e.seed for e in store.iter_episodes()) == [0, 1, 2, 3]
