"""The glue between a :class:`~vlmq.models.policy.Policy`, a training batch and the AFSFT loss.

One backbone pass gives the final hidden states of every turn; only the states before each response
token are gathered (``[B, L, H]``) before the vocabulary-sized heads run, so prompt positions cost
nothing beyond the backbone. A second, gradient-free pass over the *next* observations' prompts gives
the turn-boundary bootstrap value ``V'(s_{t+1}^0)``.
"""

from __future__ import annotations

from typing import Any

import torch

from vlmq.algo.afsft import AFSFTConfig, LossOutput, afsft_loss, state_values


def response_positions(response_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """State positions of every response token, on the response axis.

    Token ``j`` of row ``b`` sits at sequence position ``p``; its state is position ``p - 1``. Returns
    ``state_pos [B, L]`` (clamped, valid where ``mask``) and ``mask [B, L]`` with
    ``L = max response length``. Response tokens are contiguous in each row.
    """
    response_mask = response_mask.bool()
    counts = response_mask.sum(1)
    length = max(int(counts.max()) if counts.numel() else 0, 1)
    first = torch.where(counts > 0, response_mask.float().argmax(1), torch.ones_like(counts))
    j = torch.arange(length, device=response_mask.device)
    state_pos = (first[:, None] - 1 + j[None, :]).clamp(0, response_mask.shape[1] - 2)
    mask = j[None, :] < counts[:, None]
    return state_pos, mask


def gather_positions(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``x[b, pos[b, j]]`` for ``x`` of shape ``[B, T, ...]``."""
    idx = pos.view(*pos.shape, *([1] * (x.dim() - 2))).expand(*pos.shape, *x.shape[2:])
    return x.gather(1, idx)


@torch.no_grad()
def next_state_values(
    policy: Any, next_inputs: dict[str, torch.Tensor] | None, use_target: bool
) -> torch.Tensor:
    """``V'(s^0)`` at the last position of each (left-padded) prompt-only sequence."""
    if next_inputs is None or next_inputs["input_ids"].shape[0] == 0:
        return torch.zeros(0, device=policy.device)
    h = policy.hidden(next_inputs)[:, -1]
    q = policy.target_q(h) if use_target else policy.critic_q(h)
    return state_values(policy.actor_logits(h), q)


def compute_loss(policy: Any, batch: Any, cfg: AFSFTConfig, use_target: bool = True) -> LossOutput:
    """AFSFT loss of one batch of turns (see module docstring).

    ``batch`` has ``inputs`` (training layout, with ``response_mask``), ``rewards``, ``terminated``,
    ``has_next``, ``next_inputs`` and ``next_index`` (row -> row of ``next_inputs``, -1 for none).
    """
    inputs = batch.inputs
    device = policy.device
    state_pos, mask = response_positions(inputs["response_mask"].to(device))
    h = policy.hidden(inputs)
    h_sel = gather_positions(h, state_pos)  # [B, L, H]
    actions = gather_positions(inputs["input_ids"].to(device), (state_pos + 1).clamp(max=h.shape[1] - 1))
    logits = policy.actor_logits(h_sel)
    q = policy.critic_q(h_sel)
    with torch.no_grad():
        q_target = policy.target_q(h_sel) if use_target else q.detach()

    has_next = batch.has_next.to(device).bool()
    next_index = batch.next_index.to(device).long()
    v_next = next_state_values(policy, batch.next_inputs if bool(has_next.any()) else None, use_target)
    next_value = torch.zeros(mask.shape[0], device=device)
    if v_next.numel():
        ok = has_next & (next_index >= 0)
        next_value[ok] = v_next[next_index[ok]].float()
    return afsft_loss(
        logits,
        q,
        q_target,
        actions,
        mask,
        batch.rewards.to(device).float(),
        batch.terminated.to(device).bool(),
        next_value,
        has_next,
        cfg,
    )
