"""Evaluation: run a policy on fresh seeded episodes and report success, return and valid-action rate.

Evaluation is model collection without storing: it reuses :func:`vlmq.data.collect.collect`, on
seeds that training never uses.
"""

from __future__ import annotations

from typing import Any


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
) -> Any:
    """Roll out ``policy`` for ``episodes`` episodes (greedy when ``temperature == 0``).

    Returns the collector's statistics (``.metrics()`` -> success_rate, mean_return, valid_rate, ...;
    ``.samples`` -> a few raw responses, to spot a collapsing output format).
    """
    from vlmq.data.collect import collect

    was_training = policy.training
    policy.eval()
    try:
        return collect(
            env_id,
            policy="model",
            episodes=episodes,
            num_envs=min(num_envs, episodes),
            seed=seed,
            model=policy,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            cot=cot,
            out=None,
            show_progress=show_progress,
        )
    finally:
        policy.train(was_training)
