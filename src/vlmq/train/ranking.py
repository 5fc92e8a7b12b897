"""The critic's ranking accuracy: does it prefer the scripted expert's action on states it never saw?

A leading indicator of AFSFT: the binary filter can only improve on its data where the critic ranks
actions correctly. :func:`build_probes` draws held-out states of a task (episodes reset on seeds no
dataset, online round or evaluation uses, then a few random valid steps) and records, at each, the
expert's action and the other valid actions. :func:`ranking_accuracy` asks the critic, for every pair
(expert action ``e``, other action ``o``), at the first response token where the two answers differ
(the state ``s`` before it is the same for both), whether ``Q(s, e_j) > Q(s, o_j)``. Ties count half,
so a critic that scores every token alike sits at 0.5, chance.

Only tasks with a scripted expert and cheap in-process envs are probed (Gym Cards, BabyAI); tasks
that run in worker processes (MiniWoB++'s browsers) return no probes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vlmq.envs import make
from vlmq.envs.registry import spec
from vlmq.models.prompts import build_prompt, format_response
from vlmq.train.objective import logged_actions, response_positions

PROBE_SEED = 700_000_000  # + i: far from dataset (0, 500_000), online and evaluation seeds
CHANCE_BAND = 0.05
"""A ranking accuracy within this of chance (see :func:`blind_accuracy`) is reported as chance."""


@dataclass
class Probe:
    """One held-out state: its observation, prompt, the expert's action and the alternatives."""

    image: np.ndarray
    prompt: str
    expert: str
    others: list[str]


def build_probes(
    env_id: str, states: int = 64, seed: int = PROBE_SEED, max_random_steps: int = 3, max_others: int = 8
) -> list[Probe]:
    """``states`` held-out probe states of ``env_id`` (see module docstring); ``[]`` where the task
    has no cheap scripted expert."""
    if spec(env_id).workers:
        return []
    env = make(env_id)
    task = env.task_info()
    rng = np.random.default_rng(seed)
    probes: list[Probe] = []
    try:
        for i in range(states):
            obs, _ = env.reset(seed=seed + i)
            for _ in range(int(rng.integers(0, max_random_steps + 1))):
                obs, _r, term, trunc, _info = env.step(env.random_action())
                if term or trunc:
                    obs, _ = env.reset(seed=seed + i)
                    break
            try:
                expert = env.expert_action()
                valid = env.valid_actions()
            except NotImplementedError:
                return []
            others = [a for a in valid if a != expert]
            if len(others) > max_others:
                others = [others[k] for k in sorted(rng.choice(len(others), max_others, replace=False))]
            if others:
                probes.append(Probe(obs["image"], build_prompt(task, obs["text"]), expert, others))
    finally:
        env.close()
    return probes


@torch.no_grad()
def decision_gaps(
    policy: Any, probes: list[Probe], use_target: bool = False, batch_size: int = 16
) -> list[list[float | None]]:
    """Per probe and per other action, ``Q(s, e_j) - Q(s, o_j)`` at the first response token ``j``
    where the expert's answer ``e`` and the other answer ``o`` differ (``None`` where one answer is a
    prefix of the other: no token to compare). One forward pass per ``batch_size`` probes (the
    expert's answers); the other answers are only tokenised."""
    was_training = policy.training
    policy.eval()
    gaps: list[list[float | None]] = []
    try:
        for start in range(0, len(probes), batch_size):
            chunk = probes[start : start + batch_size]
            q, expert_tokens = _answer_tokens(policy, chunk, [[p.expert] for p in chunk], True, use_target)
            _, other_tokens = _answer_tokens(policy, chunk, [p.others for p in chunk], False)
            for i, (e, others) in enumerate(zip(expert_tokens, other_tokens, strict=True)):
                row: list[float | None] = []
                for o in others:
                    j = next((k for k, (a, b) in enumerate(zip(e[0], o, strict=False)) if a != b), None)
                    row.append(None if j is None else float(q[i, j, e[0][j]]) - float(q[i, j, o[j]]))  # type: ignore[index]
                gaps.append(row)
    finally:
        policy.train(was_training)
    return gaps


def ranking_accuracy(
    policy: Any, probes: list[Probe], use_target: bool = False, batch_size: int = 16
) -> float | None:
    """The share of (expert, other) pairs the critic orders correctly at their first differing
    response token (:func:`decision_gaps`), ties counting half; ``None`` without probes (see module
    docstring)."""
    if not probes:
        return None
    scores = [
        1.0 if g > 0 else 0.5 if g == 0 else 0.0
        for row in decision_gaps(policy, probes, use_target, batch_size)
        for g in row
        if g is not None
    ]
    return float(np.mean(scores)) if scores else None


def _answer_tokens(
    policy: Any, probes: list[Probe], answers: list[list[str]], with_q: bool, use_target: bool = False
) -> tuple[torch.Tensor | None, list[list[list[int]]]]:
    """The response tokens of every answer of every probe, as the learner encodes them, and with
    ``with_q`` the critic's Q-values at the response states of each probe's first answer."""
    owner = [i for i, a in enumerate(answers) for _ in a]
    flat = [x for a in answers for x in a]
    inputs = policy.encode([probes[i].image for i in owner], [probes[i].prompt for i in owner],
                           [format_response(x) for x in flat])  # fmt: skip
    state_pos, mask = response_positions(inputs["response_mask"])
    tokens = logged_actions(inputs["input_ids"], state_pos)
    per_row = [tokens[r, : int(mask[r].sum())].tolist() for r in range(len(flat))]
    out: list[list[list[int]]] = [[] for _ in probes]
    for i, row in zip(owner, per_row, strict=True):
        out[i].append(row)
    if not with_q:
        return None, out
    heads = policy(inputs, state_pos)
    return heads.q_target if use_target else heads.q, out


def blind_accuracy(probes: list[Probe]) -> float:
    """Chance for a critic that ignores the state: the best accuracy a state-independent preference
    between actions reaches on ``probes`` (per pair of actions, the more frequent order; at least 0.5).
    On a task whose expert mostly picks one action, a critic that always prefers it scores this much."""
    counts: dict[tuple[str, str], int] = {}
    for p in probes:
        for o in p.others:
            counts[(p.expert, o)] = counts.get((p.expert, o), 0) + 1
    pairs = {tuple(sorted(k)) for k in counts}
    best = sum(max(counts.get((a, b), 0), counts.get((b, a), 0)) for a, b in pairs)
    total = sum(counts.values())
    return max(0.5, best / total) if total else 0.5


def ranking_verdict(accuracy: float | None, chance: float = 0.5) -> str | None:
    """A one-line warning when the critic's ranking accuracy is not above ``chance`` (0.5, or
    :func:`blind_accuracy` of the probes) by more than :data:`CHANCE_BAND`, else ``None``."""
    if accuracy is None or accuracy > chance + CHANCE_BAND:
        return None
    return (
        f"critic ranking accuracy {accuracy:.2f} is at chance ({chance:.2f}, a critic blind to the state): "
        "it does not prefer the expert's actions on held-out states, so the AFSFT filter acts on noise"
    )
