"""Evaluation: run a policy on fresh seeded episodes and report success, return and valid-action rate.

Evaluation is a :func:`vlmq.rollout.rollout` of a :class:`~vlmq.rollout.ModelAgent` that stores
nothing, on seeds that training never uses.
"""

from __future__ import annotations

from typing import Any

from vlmq.rollout import ModelAgent, RolloutStats, rollout


def evaluate_policy(
    policy: Any,
    env_id: str,
    *,
    episodes: int,
    temperature: float = 0.0,
    num_envs: int = 4,
    seed: int = 1_000_000,
    max_new_tokens: int | None = None,
    cot: bool = False,
    show_progress: bool = True,
) -> RolloutStats:
    """Roll out ``policy`` for ``episodes`` episodes (greedy when ``temperature == 0``).

    ``.metrics()`` -> success_rate, mean_return, valid_rate, ...; ``.samples`` -> a few raw responses,
    to spot a collapsing output format.
    """
    was_training = policy.training
    policy.eval()
    try:
        return rollout(
            env_id,
            ModelAgent(policy, temperature, max_new_tokens),
            episodes,
            num_envs=min(num_envs, episodes),
            seed=seed,
            cot=cot,
            show_progress=show_progress,
            desc=f"eval {env_id} ({'greedy' if temperature == 0 else f'T={temperature:g}'})",
        )
    finally:
        policy.train(was_training)
