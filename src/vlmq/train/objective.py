"""The glue between a :class:`~vlmq.models.policy.Policy`, a training batch and the AFSFT loss.

One backbone pass (:meth:`Policy.forward <vlmq.models.policy.Policy.forward>`) gives the final hidden
states of every turn; only the states before each response token are gathered (``[B, L, H]``) before
the vocabulary-sized heads run, so prompt positions cost nothing beyond the backbone. The turn-boundary
bootstrap value ``V'(s_{t+1}^0)`` of a turn whose next observation is a row of the batch
(``batch.next_row``, :func:`~vlmq.data.batches.make_batch` with ``link``) is read from that row's first
response state in this pass (target head, detached), and one an earlier step computed is carried in
``batch.next_value`` (backward lanes, :mod:`vlmq.data.lanes`; ``LossOutput.first_values`` are this
pass's values for the next step, set when the critic is trained); a second, gradient-free ``forward`` over the other next
observations' prompts (``batch.next_inputs``) gives the rest (skipped when the critic loss
has weight 0, as in plain SFT: the value enters only the critic's targets). Both go through
``forward``, so a data-parallel wrapper of the policy works alike.
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


def logged_actions(ids: torch.Tensor, state_pos: torch.Tensor) -> torch.Tensor:
    """The logged token of each response state: the one after ``state_pos`` (``[B, L]``)."""
    return gather_positions(ids, (state_pos + 1).clamp(max=ids.shape[1] - 1))


@torch.no_grad()
def next_state_values(policy: Any, next_inputs: dict[str, torch.Tensor], use_target: bool) -> torch.Tensor:
    """``V'(s^0)`` at the last position of each (left-padded) prompt-only sequence."""
    ids = next_inputs["input_ids"]
    last = torch.full((ids.shape[0], 1), ids.shape[1] - 1, device=ids.device)
    out = policy(next_inputs, last)
    return state_values(out.logits, out.q_target if use_target else out.q)[:, 0]


def compute_loss(policy: Any, batch: Any, cfg: AFSFTConfig, use_target: bool = True) -> LossOutput:
    """AFSFT loss of one batch of turns (see module docstring).

    ``policy`` is a :class:`~vlmq.models.policy.Policy` or its data-parallel wrapper (both passes call
    ``policy(inputs, positions)``). ``batch`` has ``inputs`` (training layout, with ``response_mask``),
    ``rewards``, ``terminated``, ``has_next``, ``next_inputs`` and ``next_index`` (row -> row of
    ``next_inputs``, -1 for none), and optionally ``next_row`` (row -> row of the batch whose first
    response state is the next state, -1 for none).
    """
    inputs = batch.inputs
    ids = inputs["input_ids"]
    device = ids.device
    state_pos, mask = response_positions(inputs["response_mask"].to(device))
    logits, q, q_target = policy(inputs, state_pos)  # [B, L, V] each
    if not use_target:
        q_target = q.detach()
    actions = logged_actions(ids, state_pos)

    has_next = batch.has_next.to(device).bool()
    next_index = batch.next_index.to(device).long()
    next_value = torch.zeros(mask.shape[0], device=device)
    # the bootstrap value enters only the critic's targets: with ``critic_coef`` 0 (plain SFT, filter
    # ``none``) the loss does not depend on it, so its backbone pass is skipped
    bootstrap = cfg.critic_coef != 0
    boot = has_next & (next_index >= 0)
    if bootstrap and batch.next_inputs is not None and bool(boot.any()):
        v_next = next_state_values(policy, batch.next_inputs, use_target)
        next_value[boot] = v_next[next_index[boot]].float()
    carried = getattr(batch, "next_value", None)
    if bootstrap and carried is not None:  # values an earlier pass computed (backward lanes)
        carried = carried.to(device).float()
        given = has_next & ~carried.isnan()
        next_value[given] = carried[given]
    # V'(s^0) of each row: the state before its first response token, as the bootstrap pass values it;
    # a linked turn reads its next row's, and backward lanes keep them for the next step
    first = state_values(logits[:, 0].detach(), q_target[:, 0].detach()).float() if bootstrap else None
    next_row = getattr(batch, "next_row", None)
    if first is not None and next_row is not None:
        next_row = next_row.to(device).long()
        linked = has_next & (next_row >= 0)
        next_value[linked] = first[next_row[linked]]
    out = afsft_loss(
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
    if not bootstrap:  # targets without the bootstrap value: not the critic's, so not reported
        for k in ("target_mean", "td_abs_error"):
            out.metrics.pop(k, None)
    if first is not None:  # NaN where the row has no response token (it holds no response state)
        out.first_values = torch.where(mask[:, 0], first, torch.full_like(first, float("nan")))
    return out
