"""Advantage-Filtered SFT (AFSFT): the losses, as pure functions on tensors.

Read this file top to bottom; it is the whole algorithm (docs/design.md puts it in context).

**Layout.** Every tensor is on the *response axis* of a batch of turns: row ``b`` is one turn, column
``j`` is the ``j``-th response token of that turn. ``mask[b, j]`` is True for logged tokens (a prefix
of the row). At column ``j`` the state is ``s^j = (prompt, y^{<j})`` and the action is token
``actions[b, j] = y^j``:

- ``logits[b, j]`` actor logits at ``s^j`` (the model's LM head), ``[B, L, V]``;
- ``q[b, j]`` critic Q-values at ``s^j`` for every vocabulary token, ``[B, L, V]``;
- ``q_target[b, j]`` the target critic at ``s^j`` (a Polyak copy, or ``q.detach()``), ``[B, L, V]``;
- ``reward[b]`` the environment reward of the turn, received after its last token;
- ``terminated[b]`` the episode ended for real after this turn (no bootstrap);
- ``next_value[b]`` ``V'(s_{t+1}^0)``: the target value of the state before the first token of the
  next turn (the next observation's prompt); ignored where ``has_next[b]`` is False.

**Values.** ``V(s) = sum_a pi(a|s) Q(s, a)``, the exact expectation over the vocabulary.

**Critic (TD).** The last token's target is ``r + gamma * (1 - terminated) * V'(s_{t+1}^0)``; inside a
turn the target of token ``j`` is the in-turn lambda-return
``gamma_token * ((1 - turn_lambda) V'(s^{j+1}) + turn_lambda G_{j+1})`` (``turn_lambda = 0``: one-step,
``gamma_token * V'(s^{j+1})``; 1: every token targets the turn's outcome). A time-limit truncation is not a
termination: it bootstraps from the final observation (``has_next``).
With ``trace = "tree"`` the in-turn return is Tree-Backup(lambda):
``G_j = gamma_token (V'(s^{j+1}) + c_{j+1} (G_{j+1} - Q'(s^{j+1}, a^{j+1})))`` with
``c_{j+1} = turn_lambda * pi(a^{j+1}|s^{j+1})``: the logged continuation counts as far as the current
policy would take it. Through forced tokens (``pi ~ 1``) the outcome passes unchanged, so the decision
token still targets it; at a decision the policy would not make, the trace is cut and the value of the
*current* policy (``V' = sum pi Q'``) takes its place, so values across turns follow the improving
policy, not the one that logged the data (docs/design.md, "Tree-backup traces").

**Conservative term (optional).** ``conservative * mean_j (logsumexp_b Q(s^j, b) - Q(s^j, a_j))``
(CQL) is added to the critic loss: it pushes down the Q of tokens the data does not log at a state, so
values extrapolated to tokens logged elsewhere do not make a forced token's advantage negative.

**Actor.** ``L = -sum_j w_j log pi(a_j|s_j) / max(1, #logged tokens)`` with ``w = f(stopgrad(A))``,
``A = Q(s,a) - V(s)`` and the filter ``f``: ``binary`` ``1[A >= threshold]`` (AFSFT), ``exp``
``min(exp(beta A), w_max)`` (AWR) or ``none`` ``1`` (exactly SFT). Ties pass the binary filter: a token
the critic does not rank below the policy's average (``A = 0`` exactly where the critic scores every
token alike, e.g. a freshly initialised one, or where the policy already emits only that token) is
imitated, so AFSFT starts as SFT and drops tokens only once the critic ranks them worse. A token the
policy already emits with probability at least ``forced_prob`` (a syntax token) always passes: its
advantage ``(1 - pi(a)) (Q(a) - mean_{b != a} Q(b))`` is tiny and its sign is set by the Q-values of
tokens the data never logs there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F

FilterKind = Literal["binary", "exp", "none"]


@dataclass
class AFSFTConfig:
    """Hyper-parameters of the AFSFT loss (the defaults and why: docs/design.md)."""

    filter: FilterKind = "binary"
    """``binary`` = AFSFT, ``exp`` = advantage-weighted regression, ``none`` = plain SFT."""
    threshold: float = 0.0
    """Binary filter: imitate a token when its advantage is at least this (ties pass)."""
    beta: float = 1.0
    """Exp filter temperature: ``w = min(exp(beta * A), w_max)``."""
    w_max: float = 20.0
    """Exp filter clip."""
    gamma: float = 0.9
    """Discount between turns."""
    gamma_token: float = 1.0
    """Discount between tokens of one turn."""
    critic_coef: float = 10.0
    """Weight of the critic loss, ``L = L_actor + critic_coef * L_critic`` (:meth:`for_filter`: 0 for
    filter ``none``, plain SFT, unless given). 10 (as AMAGO): with 1 the critic's gradient into the
    shared LoRA is too small to build state-dependent values (docs/design.md, the critic ablation)."""
    huber_delta: float | None = None
    """Use a Huber critic loss with this delta instead of the squared error."""
    trace: Literal["lambda", "tree"] = "lambda"
    """In-turn return (:func:`td_targets`): ``lambda``, the lambda-return, or ``tree``, Tree-Backup(lambda),
    whose trace through each logged token is weighted by the policy's probability of it."""
    turn_lambda: float = 1.0
    """In-turn lambda of the TD targets (see :func:`td_targets`): 1 = every token of a turn targets the
    turn's outcome, 0 = one-step TD. 1: with one-step targets the outcome reaches the decision token
    only through the hidden states of the syntax tokens after it, which on Blackjack never learned to
    carry it (docs/design.md, the critic ablation)."""
    forced_prob: float | None = 0.95
    """Binary filter: a logged token the policy already emits with at least this probability always
    passes (see :func:`filter_weights`); ``None`` (flag: ``off``) = off. Without it the filter dropped
    syntax tokens on the sign of a near-zero advantage and runs lost their action syntax."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this before the TD target."""
    conservative: float = 0.0
    """Weight of the conservative critic term (CQL, see module docstring); 0 = off."""
    extra: dict[str, float] = field(default_factory=dict)
    """Unused; kept so that older ``config.json`` files load (no flag)."""

    @classmethod
    def for_filter(cls, filter: FilterKind, **overrides: Any) -> AFSFTConfig:
        """The loss of ``filter``; ``none`` is plain SFT: no critic loss moves the shared backbone
        (``critic_coef`` 0 unless given)."""
        if filter == "none":
            overrides.setdefault("critic_coef", 0.0)
        return cls(filter=filter, **overrides)


@dataclass
class LossOutput:
    loss: torch.Tensor
    actor_loss: torch.Tensor
    critic_loss: torch.Tensor
    metrics: dict[str, float]
    first_values: torch.Tensor | None = None  # [B] V'(s^0) per row (compute_loss, when the critic trains)


def state_values(logits: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``V(s) = sum_a pi(a|s) Q(s,a)`` with ``pi = softmax(logits)`` (no gradient through pi).

    Computed as ``m + sum_a pi(a|s) (Q(s,a) - m)`` with ``m = max_a Q(s,a)`` (equal, as ``pi`` sums to
    1): exactly ``m`` where the critic scores every token alike. ``sum pi Q`` is off there by the
    rounding of ``sum pi`` (about 1e-7), so the TD errors of a critic that already fits its targets are
    not zero, and Adam, blind to gradient scale, turns them into steps of size ``lr``: a flat critic
    (every return equal) drifted into random advantages that the binary filter acted on."""
    q = q.float()
    m = q.amax(dim=-1, keepdim=True)
    pi = torch.softmax(logits.detach().float(), dim=-1)
    return m.squeeze(-1) + (pi * (q - m)).sum(-1)


def taken(values: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``values[..., actions]`` (float): the value of each logged token, e.g. ``Q(s,a)`` or ``log pi(a|s)``."""
    return values.float().gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def advantages(logits: torch.Tensor, q: torch.Tensor, q_taken: torch.Tensor) -> torch.Tensor:
    """``A = Q(s,a) - V(s)``, computed as ``sum_b pi(b|s) (Q(s,a) - Q(s,b))`` (equal, as ``pi`` sums
    to 1): exactly 0 wherever the Q-values are equal (e.g. a freshly initialised critic), where
    ``Q - sum pi Q`` leaves rounding noise of either sign that the binary filter would act on."""
    pi = torch.softmax(logits.detach().float(), dim=-1)
    return (pi * (q_taken.float().unsqueeze(-1) - q.float())).sum(-1)


def td_targets(
    v_target: torch.Tensor,
    mask: torch.Tensor,
    reward: torch.Tensor,
    terminated: torch.Tensor,
    next_value: torch.Tensor,
    has_next: torch.Tensor,
    gamma: float,
    gamma_token: float = 1.0,
    reward_scale: float = 1.0,
    turn_lambda: float = 0.0,
    pi_taken: torch.Tensor | None = None,
    q_target_taken: torch.Tensor | None = None,
) -> torch.Tensor:
    """TD targets for every logged token, ``[B, L]`` (zero where ``mask`` is False).

    ``v_target[b, j] = V'(s^j)``. The turn's last token targets ``r + gamma (1 - terminated) V'(s_{t+1}^0)``;
    an earlier token ``j`` the in-turn lambda-return
    ``G_j = gamma_token ((1 - turn_lambda) V'(s^{j+1}) + turn_lambda G_{j+1})``: with ``turn_lambda = 0``
    one-step TD (credit moves one token per target update), with 1 every token of the turn targets the
    turn's outcome at once (the logged continuation of the turn, as in SARSA).

    With ``pi_taken[b, j] = pi(a^j|s^j)`` and ``q_target_taken[b, j] = Q'(s^j, a^j)`` (both given, or
    neither) the in-turn return is Tree-Backup(lambda):
    ``G_j = gamma_token (V'(s^{j+1}) + turn_lambda pi(a^{j+1}|s^{j+1}) (G_{j+1} - Q'(s^{j+1}, a^{j+1})))``,
    an estimate of the current policy's value whatever policy logged the tokens.
    """
    if (pi_taken is None) != (q_target_taken is None):
        raise ValueError("td_targets: tree-backup needs both pi_taken and q_target_taken")
    tree = pi_taken is not None
    mask = mask.bool()
    next_logged = torch.zeros_like(mask)
    next_logged[:, :-1] = mask[:, 1:]
    cont = has_next.float() * (1.0 - terminated.float())
    boot = reward.float() * reward_scale + gamma * cont * next_value.float()  # [B]
    v = v_target.float()
    target = torch.zeros_like(v)
    g_next = torch.zeros_like(boot)  # G_{j+1}
    for j in range(v.shape[1] - 1, -1, -1):
        v_next = v[:, j + 1] if j + 1 < v.shape[1] else torch.zeros_like(boot)
        if tree and j + 1 < v.shape[1]:  # the last column never continues: its target is ``boot``
            c = turn_lambda * pi_taken[:, j + 1].float()  # type: ignore[index]
            inner = gamma_token * (v_next + c * (g_next - q_target_taken[:, j + 1].float()))  # type: ignore[index]
        else:
            inner = gamma_token * ((1.0 - turn_lambda) * v_next + turn_lambda * g_next)
        g = torch.where(next_logged[:, j], inner, boot)
        target[:, j] = g
        g_next = g
    return torch.where(mask, target, torch.zeros_like(target))


def filter_weights(
    advantage: torch.Tensor,
    kind: FilterKind,
    threshold: float = 0.0,
    beta: float = 1.0,
    w_max: float = 20.0,
    pi_taken: torch.Tensor | None = None,
    forced_prob: float | None = None,
) -> torch.Tensor:
    """Per-token imitation weights from (already detached) advantages. ``binary`` passes ties
    (``A >= threshold``): with no preference of the critic, the token is imitated as in SFT.

    With ``forced_prob`` (and the policy's probability of each logged token, ``pi_taken``) a token
    with ``pi >= forced_prob`` always passes the binary filter. Its advantage
    ``(1 - pi) (Q(a) - mean_{b != a} Q(b))`` is a tiny number whose sign comes from the Q-values of
    tokens the data never logs there, so the filter would drop syntax tokens at random."""
    if kind == "binary":
        keep = advantage >= threshold
        if forced_prob is not None:
            if pi_taken is None:
                raise ValueError("filter_weights: forced_prob needs pi_taken")
            keep = keep | (pi_taken >= forced_prob)
        return keep.float()
    if kind == "exp":
        return torch.clamp(torch.exp(beta * advantage), max=w_max)
    if kind == "none":
        return torch.ones_like(advantage)
    raise ValueError(f"unknown filter {kind!r}; choose binary, exp or none")


def actor_loss(logp_taken: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``-sum w log pi(a|s) / max(1, #logged)``: normalised by logged tokens, not by tokens that pass."""
    m = mask.float()
    return -(weights * logp_taken * m).sum() / m.sum().clamp(min=1.0)


def critic_loss(
    q_taken: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, huber_delta: float | None = None
) -> torch.Tensor:
    """Mean over logged tokens of ``(Q(s,a) - stopgrad(target))^2`` (or Huber)."""
    m = mask.float()
    target = target.detach()
    if huber_delta is None:
        err = (q_taken - target) ** 2
    else:
        err = F.huber_loss(q_taken, target, reduction="none", delta=huber_delta)
    return (err * m).sum() / m.sum().clamp(min=1.0)


def conservative_penalty(q: torch.Tensor, q_taken: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """CQL's regulariser: mean over logged tokens of ``logsumexp_b Q(s,b) - Q(s,a)``. Its gradient
    lowers every token's Q in proportion to ``softmax(Q)`` and raises the logged token's by the rest."""
    m = mask.float()
    gap = torch.logsumexp(q.float(), dim=-1) - q_taken
    return (gap * m).sum() / m.sum().clamp(min=1.0)


def afsft_loss(
    logits: torch.Tensor,
    q: torch.Tensor,
    q_target: torch.Tensor,
    actions: torch.Tensor,
    mask: torch.Tensor,
    reward: torch.Tensor,
    terminated: torch.Tensor,
    next_value: torch.Tensor,
    has_next: torch.Tensor,
    cfg: AFSFTConfig,
) -> LossOutput:
    """The full AFSFT objective ``L_actor + c * L_critic`` and its diagnostics (see module docstring)."""
    mask = mask.bool()
    logp_taken = taken(torch.log_softmax(logits.float(), dim=-1), actions)
    q_taken = taken(q, actions)

    v_target = state_values(logits, q_target.detach())
    tree = cfg.trace == "tree"
    target = td_targets(
        v_target, mask, reward, terminated, next_value.detach(), has_next,
        cfg.gamma, cfg.gamma_token, cfg.reward_scale, cfg.turn_lambda,
        logp_taken.detach().exp() if tree else None, taken(q_target.detach(), actions) if tree else None,
    )  # fmt: skip
    l_critic = critic_loss(q_taken, target, mask, cfg.huber_delta)
    gap = conservative_penalty(q, q_taken, mask) if cfg.conservative else None
    if gap is not None:
        l_critic = l_critic + cfg.conservative * gap

    with torch.no_grad():
        advantage = advantages(logits, q.detach(), q_taken.detach())
        weights = filter_weights(
            advantage,
            cfg.filter,
            cfg.threshold,
            cfg.beta,
            cfg.w_max,
            logp_taken.detach().exp(),
            cfg.forced_prob,
        )
    l_actor = actor_loss(logp_taken, weights, mask)
    loss = l_actor + cfg.critic_coef * l_critic
    metrics = _metrics(mask, advantage, weights, q_taken, target, logp_taken)
    if gap is not None:
        metrics["conservative_gap"] = float(gap.detach())
    return LossOutput(loss, l_actor, l_critic, metrics)


@torch.no_grad()
def _metrics(
    mask: torch.Tensor,
    advantage: torch.Tensor,
    weights: torch.Tensor,
    q_taken: torch.Tensor,
    target: torch.Tensor,
    logp_taken: torch.Tensor,
) -> dict[str, float]:
    n = int(mask.sum())
    if n == 0:
        return {"tokens": 0.0}
    a, w, qt, tg, lp = (x[mask].float() for x in (advantage, weights, q_taken, target, logp_taken))
    return {
        "tokens": float(n),
        "filter_pass_frac": float((w > 0).float().mean()),
        "weight_mean": float(w.mean()),
        "adv_mean": float(a.mean()),
        "adv_std": float(a.std(unbiased=False)),
        "adv_pos_frac": float((a > 0).float().mean()),
        "q_mean": float(qt.mean()),
        "target_mean": float(tg.mean()),
        "td_abs_error": float((qt - tg).abs().mean()),
        "logp_mean": float(lp.mean()),
    }
