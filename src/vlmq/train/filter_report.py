"""What the critic makes of logged turns: which response tokens pass the AFSFT filter, position by position.

``vlmq filter-report RUN --data DATA`` answers the question the training curves cannot: *which*
tokens a policy's critic lets the actor imitate. For a sample of logged turns it computes, at every
response position (0 = the first token of the answer), the share of logged tokens that pass the
filter, their mean advantage ``A = sum_b pi(b) (Q(a) - Q(b))``, the policy's probability of the
logged token and the most common logged tokens with their own pass rates. A position whose syntax
tokens rarely pass (e.g. the end-of-turn token) is a format the actor is not taught, whatever the
turn's return: the usual reason for a valid-action rate that stays low under AFSFT while SFT learns it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vlmq.algo.afsft import AFSFTConfig, advantages, filter_weights, taken
from vlmq.data.batches import make_batch, samples_from_rows
from vlmq.data.store import EpisodeStore
from vlmq.train.objective import logged_actions, response_positions


@dataclass
class PositionReport:
    """Statistics of the logged tokens at one response position."""

    position: int
    tokens: int
    pass_frac: float
    adv_mean: float
    adv_std: float
    pi_logged: float
    """Mean probability the policy gives the logged token."""
    top: list[tuple[str, int, float]] = field(default_factory=list)
    """The most common logged tokens here: ``(text, count, pass fraction)``."""


@torch.no_grad()
def filter_report(
    policy: Any, samples: list[Any], cfg: AFSFTConfig, batch_size: int = 16, top: int = 3
) -> list[PositionReport]:
    """Per response position, what the filter of ``cfg`` does with the logged tokens of ``samples``
    (:class:`~vlmq.data.batches.TurnSample`) under ``policy``'s actor and critic (see module docstring)."""
    was_training = policy.training
    policy.eval()
    per_pos: dict[int, list[tuple[int, float, float, float]]] = {}
    try:
        for start in range(0, len(samples), batch_size):
            inputs = make_batch(policy, samples[start : start + batch_size]).inputs
            state_pos, mask = response_positions(inputs["response_mask"])
            out = policy(inputs, state_pos)
            actions = logged_actions(inputs["input_ids"], state_pos)
            adv = advantages(out.logits, out.q, taken(out.q, actions))
            pi = taken(torch.softmax(out.logits.float(), -1), actions)
            w = filter_weights(adv, cfg.filter, cfg.threshold, cfg.beta, cfg.w_max, pi, cfg.forced_prob)
            for b, j in mask.nonzero().tolist():
                row = (int(actions[b, j]), float(w[b, j] > 0), float(adv[b, j]), float(pi[b, j]))
                per_pos.setdefault(j, []).append(row)
    finally:
        policy.train(was_training)
    reports = []
    for j in sorted(per_pos):
        rows = per_pos[j]
        toks, passed, adv_j, pi_j = (np.array(x) for x in zip(*rows, strict=True))
        common = Counter(toks.tolist()).most_common(top)
        reports.append(
            PositionReport(
                position=j,
                tokens=len(rows),
                pass_frac=float(passed.mean()),
                adv_mean=float(adv_j.mean()),
                adv_std=float(adv_j.std()),
                pi_logged=float(pi_j.mean()),
                top=[(policy.tokenizer.decode([t]), n, float(passed[toks == t].mean())) for t, n in common],
            )
        )
    return reports


def sample_turns(data: str, turns: int, seed: int = 0) -> list[Any]:
    """``turns`` logged turns of a store, drawn without replacement (seeded), with their next
    observations (the store is read once)."""
    samples = samples_from_rows(EpisodeStore(data).iter_turns())
    if not samples:
        raise ValueError(f"{data}: the dataset holds no turns")
    idx = np.random.default_rng(seed).choice(len(samples), min(turns, len(samples)), replace=False)
    return [samples[i] for i in sorted(idx)]


def format_report(reports: list[PositionReport]) -> str:
    """A plain-text table, one line per position."""
    lines = ["pos  tokens  pass   adv_mean   adv_std  pi(logged)  common logged tokens (count, pass)"]
    for r in reports:
        common = ", ".join(f"{t!r} ({n}, {p:.2f})" for t, n, p in r.top)
        lines.append(
            f"{r.position:3d}  {r.tokens:6d}  {r.pass_frac:4.2f}  {r.adv_mean:+9.4f}  {r.adv_std:8.4f}"
            f"  {r.pi_logged:10.2f}  {common}"
        )
    return "\n".join(lines)
