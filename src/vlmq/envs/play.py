"""Play scripted policies (random, expert, noisy expert) in any registered env and measure them.

``play("gym_cards/Blackjack", "expert", episodes=100)`` runs episode ``i`` with ``reset(seed=seed+i)``
and returns :class:`PlayStats`. With ``save_frames=DIR`` the first episode is written as
``DIR/frame_000.png, frame_001.png, ...`` (frame 0 is the reset observation, frame t the one after
action t) and ``DIR/episode.txt`` with each frame's text observation, the action and the reward.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from vlmq.envs.registry import make

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
) -> PlayStats:
    """Run ``episodes`` seeded episodes of a scripted ``policy`` and aggregate the results.

    ``policy``: ``random`` (uniform over valid actions), ``expert``, or ``noisy`` (the expert with
    probability ``1 - epsilon``, else random). ``max_steps`` guards against envs without a time limit.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if episodes < 1:
        raise ValueError("episodes must be >= 1")
    env = make(env_id, **(env_kwargs or {}))
    frames_dir = Path(save_frames) if save_frames is not None else None
    log: list[str] = []
    successes = strict = steps = valid = 0
    total_return = 0.0
    elapsed = 0.0
    try:
        from tqdm.auto import tqdm

        for ep in tqdm(range(episodes), desc=f"{env_id} {policy}", disable=not progress, leave=False):
            record = frames_dir is not None and ep == 0
            t0 = time.perf_counter()
            obs, _ = env.reset(seed=seed + ep)
            if record:
                assert frames_dir is not None
                elapsed += time.perf_counter() - t0
                frames_dir.mkdir(parents=True, exist_ok=True)
                log.append(f"[{_save_frame(frames_dir, 0, obs['image'])}]\n{obs['text']}\n")
                t0 = time.perf_counter()
            ep_return, ep_strict, info = 0.0, False, {}
            for t in range(1, max_steps + 1):
                action = env.scripted_action(policy, epsilon)
                obs, reward, terminated, truncated, info = env.step(action)
                steps += 1
                valid += bool(info.get("valid", True))
                ep_return += reward
                ep_strict = ep_strict or bool(info.get("strict_success", False))
                if record:
                    assert frames_dir is not None
                    elapsed += time.perf_counter() - t0
                    name = _save_frame(frames_dir, t, obs["image"])
                    log.append(
                        f"action: {action!r}  reward: {reward:g}  valid: {info.get('valid')}  "
                        f"terminated: {terminated}  truncated: {truncated}\n\n[{name}]\n{obs['text']}\n"
                    )
                    t0 = time.perf_counter()
                if terminated or truncated:
                    break
            elapsed += time.perf_counter() - t0
            successes += bool(info.get("success", ep_return > 0))
            strict += ep_strict
            total_return += ep_return
    finally:
        env.close()
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
