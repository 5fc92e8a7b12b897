"""Play scripted policies (random, expert, noisy expert) in any registered env and measure them.

``play("gym_cards/Blackjack", "expert", episodes=100)`` runs episode ``i`` with ``reset(seed=seed+i)``
and returns :class:`PlayStats`. With ``save_frames=DIR`` the first episode is written as
``DIR/frame_000.png, frame_001.png, ...`` (frame 0 is the reset observation, frame t the one after
action t) and ``DIR/episode.txt`` with each frame's text observation, the action and the reward.
``num_envs=N`` plays N episodes at a time (same episodes, same results), in subprocess workers for
envs registered with ``workers=True`` (MiniWoB++ browsers), in this process otherwise.
Speed (``steps_per_s``) is wall-clock env steps per second, resets and policy included; env
start-up (worker spawn and the first reset of each env, e.g. a browser launch) and frame writing
excluded.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from vlmq.envs.vector import VectorEnv
from vlmq.utils.progress import progress_bar

POLICIES: tuple[str, ...] = ("random", "expert", "noisy")


@dataclass(frozen=True)
class PlayStats:
    """Aggregate results of :func:`play` (rates in [0, 1])."""

    env_id: str
    policy: str
    episodes: int
    seed: int
    epsilon: float
    success_rate: float  # episode over and summed reward > 0 (the RL4VLM rule)
    strict_success_rate: float  # task-specific (target reached, formula correct, hand won, ...)
    mean_return: float
    valid_action_rate: float
    mean_length: float
    steps: int
    steps_per_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """A short human-readable table."""
        eps = f" (epsilon {self.epsilon:g})" if self.policy == "noisy" else ""
        return "\n".join(
            [
                f"{self.env_id}: {self.policy}{eps}, {self.episodes} episodes from seed {self.seed}",
                f"  success rate         {100 * self.success_rate:6.1f} %",
                f"  strict success rate  {100 * self.strict_success_rate:6.1f} %",
                f"  mean return          {self.mean_return:8.3f}",
                f"  valid-action rate    {100 * self.valid_action_rate:6.1f} %",
                f"  mean episode length  {self.mean_length:8.2f}",
                f"  env steps/s          {self.steps_per_s:8.0f}",
            ]
        )


def _save_frame(directory: Path, index: int, image: Any) -> str:
    name = f"frame_{index:03d}.png"
    Image.fromarray(image).save(directory / name)
    return name


def play(
    env_id: str,
    policy: str = "expert",
    episodes: int = 100,
    seed: int = 0,
    epsilon: float = 0.2,
    save_frames: Path | str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
    max_steps: int = 1000,
    num_envs: int = 1,
) -> PlayStats:
    """Run ``episodes`` seeded episodes of a scripted ``policy`` and aggregate the results.

    ``policy``: ``random`` (uniform over valid actions), ``expert``, or ``noisy`` (the expert with
    probability ``1 - epsilon``, else random). ``max_steps`` guards against envs without a time limit.
    ``num_envs > 1`` runs that many envs side by side (:class:`~vlmq.envs.vector.VectorEnv`: one
    browser worker each for MiniWoB++); the episodes and their results are the same as with one.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if episodes < 1:
        raise ValueError("episodes must be >= 1")
    if num_envs < 1:
        raise ValueError("num_envs must be >= 1")
    n = min(num_envs, episodes)
    venv = VectorEnv(env_id, n, env_kwargs=env_kwargs)
    frames_dir = Path(save_frames) if save_frames is not None else None
    log: list[str] = []
    successes = strict = steps = valid = 0
    total_return = 0.0
    next_episode = 0
    saving = 0.0  # time spent writing frames, not counted as env time
    slots: dict[int, dict[str, Any]] = {}  # env index -> its running episode

    def start(indices: list[int]) -> None:
        """Reset these envs (one batch, in parallel) to the next episodes, while any are left."""
        nonlocal next_episode, saving
        indices = indices[: episodes - next_episode]
        for i in indices:
            slots[i] = {"ep": next_episode, "t": 0, "return": 0.0, "strict": False}
            next_episode += 1
        if not indices:
            return
        resets = venv.reset([seed + slots[i]["ep"] for i in indices], indices)
        for i, (obs, _) in zip(indices, resets, strict=True):
            if frames_dir is not None and slots[i]["ep"] == 0:
                ts = time.perf_counter()
                frames_dir.mkdir(parents=True, exist_ok=True)
                log.append(f"[{_save_frame(frames_dir, 0, obs['image'])}]\n{obs['text']}\n")
                saving += time.perf_counter() - ts

    try:
        bar = progress_bar(total=episodes, desc=f"{env_id} {policy}", disable=not progress, leave=False)
        start(list(range(n)))  # first resets: browser start-up etc., not timed
        saving = 0.0
        t0 = time.perf_counter()
        while slots:
            idx = sorted(slots)
            actions = venv.call("scripted_action", policy, epsilon, indices=idx)
            results = venv.step(actions, indices=idx)
            finished: list[int] = []
            for i, action, (obs, reward, terminated, truncated, info) in zip(
                idx, actions, results, strict=True
            ):
                slot = slots[i]
                slot["t"] += 1
                steps += 1
                valid += bool(info.get("valid", True))
                slot["return"] += reward
                slot["strict"] = slot["strict"] or bool(info.get("strict_success", False))
                if frames_dir is not None and slot["ep"] == 0:
                    ts = time.perf_counter()
                    name = _save_frame(frames_dir, slot["t"], obs["image"])
                    log.append(
                        f"action: {action!r}  reward: {reward:g}  valid: {info.get('valid')}  "
                        f"terminated: {terminated}  truncated: {truncated}\n\n[{name}]\n{obs['text']}\n"
                    )
                    saving += time.perf_counter() - ts
                if terminated or truncated or slot["t"] >= max_steps:
                    successes += bool(info.get("success", slot["return"] > 0))
                    strict += slot["strict"]
                    total_return += slot["return"]
                    bar.update()
                    del slots[i]
                    finished.append(i)
            start(finished)
        elapsed = time.perf_counter() - t0 - saving
        bar.close()
    finally:
        venv.close()
    if frames_dir is not None:
        (frames_dir / "episode.txt").write_text("\n".join(log), encoding="utf-8")
    return PlayStats(
        env_id=env_id,
        policy=policy,
        episodes=episodes,
        seed=seed,
        epsilon=float(epsilon),
        success_rate=successes / episodes,
        strict_success_rate=strict / episodes,
        mean_return=total_return / episodes,
        valid_action_rate=valid / max(1, steps),
        mean_length=steps / episodes,
        steps=steps,
        steps_per_s=steps / elapsed if elapsed > 0 else float("inf"),
    )
