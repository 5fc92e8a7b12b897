"""The AFSFT maths, pinned against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vlmq.algo.afsft import (
    AFSFTConfig,
    advantages,
    afsft_loss,
    conservative_penalty,
    filter_weights,
    state_values,
    taken,
    td_targets,
)  # fmt: skip


def _two_turn_episode() -> dict[str, torch.Tensor]:
    """Turn 1 (row 0): tokens [2, 2], reward 0.5. Turn 2 (row 1): token [1], reward 1, terminated.

    Vocabulary of 3. pi, Q and Q' chosen so every value below is easy by hand.
    """
    pi = torch.tensor(
        [
            [[0.5, 0.25, 0.25], [0.25, 0.25, 0.5]],
            [[0.25, 0.5, 0.25], [1 / 3, 1 / 3, 1 / 3]],  # second column is padding
        ]
    )
    q = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 4.0, 1.0]], [[0.0, 2.0, 1.0], [9.0, 9.0, 9.0]]])
    q_target = torch.tensor([[[2.0, 2.0, 2.0], [1.0, 0.0, 3.0]], [[0.0, 2.0, 4.0], [9.0, 9.0, 9.0]]])
    return {
        "logits": pi.log(),
        "q": q,
        "q_target": q_target,
        "actions": torch.tensor([[2, 2], [1, 0]]),
        "mask": torch.tensor([[True, True], [True, False]]),
        "reward": torch.tensor([0.5, 1.0]),
        "terminated": torch.tensor([False, True]),
        # V'(s_2^0): the first state of turn 2 = row 1, column 0: 0*.25 + 2*.5 + 4*.25 = 2
        "next_value": torch.tensor([2.0, 0.0]),
        "has_next": torch.tensor([True, False]),
    }


def test_state_values_are_exact_expectations() -> None:
    ep = _two_turn_episode()
    v = state_values(ep["logits"], ep["q"])
    assert v[0, 0].item() == pytest.approx(0.5 * 1 + 0.25 * 2 + 0.25 * 3)  # 1.75
    assert v[0, 1].item() == pytest.approx(0.25 * 0 + 0.25 * 4 + 0.5 * 1)  # 1.5
    assert v[1, 0].item() == pytest.approx(0.25 * 0 + 0.5 * 2 + 0.25 * 1)  # 1.25
    vt = state_values(ep["logits"], ep["q_target"])
    assert vt[0, 1].item() == pytest.approx(0.25 * 1 + 0.25 * 0 + 0.5 * 3)  # 1.75
    assert vt[1, 0].item() == pytest.approx(2.0)


def test_advantages_by_hand_and_exactly_zero_for_a_flat_critic() -> None:
    ep = _two_turn_episode()
    q_taken = ep["q"].gather(-1, ep["actions"][..., None])[..., 0]
    a = advantages(ep["logits"], ep["q"], q_taken)
    assert a[0, 0].item() == pytest.approx(3.0 - 1.75) and a[0, 1].item() == pytest.approx(1.0 - 1.5)
    assert a[1, 0].item() == pytest.approx(2.0 - 1.25)
    # a critic that scores every token alike (as a fresh one does): a tie, every token passes the
    # binary filter, so AFSFT starts as SFT (with `A > 0` it would imitate nothing and never learn)
    logits = torch.randn(4, 6, 1000, generator=torch.Generator().manual_seed(0)) * 5
    flat = torch.full((4, 6, 1000), -2.37)
    a = advantages(logits, flat, flat[..., 0])
    assert torch.all(a == 0) and torch.all(filter_weights(a, "binary") == 1)
    # the plain `Q - V` form leaves rounding noise that would half-pass the filter
    noisy = flat[..., 0] - (torch.softmax(logits, -1) * flat).sum(-1)
    assert torch.any(noisy < 0)


def test_a_flat_critic_has_exactly_zero_td_error_and_gradient() -> None:
    """Every return equal to the critic's value (e.g. click-test: every episode succeeds in one turn):
    values, TD errors and the critic's gradient are exactly 0, so Adam (scale-free) does not move it."""
    g = torch.Generator().manual_seed(0)
    B, L, V, c = 3, 5, 4000, 0.7
    logits = torch.randn(B, L, V, generator=g) * 4
    flat = torch.full((B, L, V), c)
    assert torch.all(state_values(logits, flat) == c)
    assert torch.any((torch.softmax(logits, -1) * flat).sum(-1) != c)  # the plain sum is not exact
    q = flat.clone().requires_grad_(True)
    mask = torch.ones(B, L, dtype=torch.bool)
    out = afsft_loss(logits, q, flat, torch.randint(0, V, (B, L), generator=g), mask, torch.full((B,), c),
                     torch.ones(B, dtype=torch.bool), torch.zeros(B), torch.zeros(B, dtype=torch.bool),
                     AFSFTConfig(filter="binary"))  # fmt: skip
    out.critic_loss.backward()
    assert out.critic_loss.item() == 0.0 and q.grad is not None and torch.all(q.grad == 0)
    assert out.metrics["filter_pass_frac"] == 1.0  # a tie everywhere: AFSFT is SFT here


def test_binary_filter_ties_pass_and_the_threshold_is_inclusive() -> None:
    a = torch.tensor([-1e-6, 0.0, 1e-6, 0.5])
    assert filter_weights(a, "binary").tolist() == [0.0, 1.0, 1.0, 1.0]
    assert filter_weights(a, "binary", threshold=0.5).tolist() == [0.0, 0.0, 0.0, 1.0]


def test_forced_tokens_pass_the_binary_filter() -> None:
    """A token the policy emits with pi >= forced_prob is imitated whatever the sign of its (tiny)
    advantage; below it the advantage decides; the rule needs the probabilities."""
    a = torch.tensor([-1e-6, -1e-6, -0.3, 0.2])
    pi = torch.tensor([0.999, 0.5, 0.97, 0.5])
    assert filter_weights(a, "binary", pi_taken=pi, forced_prob=0.95).tolist() == [1.0, 0.0, 1.0, 1.0]
    assert filter_weights(a, "binary", pi_taken=pi).tolist() == [0.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="pi_taken"):
        filter_weights(a, "binary", forced_prob=0.95)


def test_turn_lambda_one_gives_every_token_the_turns_outcome() -> None:
    v = torch.tensor([[5.0, 6.0, 7.0], [5.0, 6.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    reward, term = torch.tensor([1.0, -1.0]), torch.tensor([True, False])
    nv, has_next = torch.tensor([0.0, 2.0]), torch.tensor([False, True])
    one = td_targets(v, mask, reward, term, nv, has_next, gamma=0.5, turn_lambda=1.0)
    assert one.tolist() == [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]  # -1 + 0.5 * 2 = 0 for the second turn
    half = td_targets(v, mask, reward, term, nv, has_next, gamma=0.5, turn_lambda=0.5)
    assert half[0].tolist() == [pytest.approx(0.5 * 6.0 + 0.5 * (0.5 * 7.0 + 0.5)), 0.5 * 7.0 + 0.5, 1.0]
    zero = td_targets(v, mask, reward, term, nv, has_next, gamma=0.5, turn_lambda=0.0)
    assert zero.tolist() == td_targets(v, mask, reward, term, nv, has_next, gamma=0.5).tolist()
    assert zero[0].tolist() == [6.0, 7.0, 1.0]


def _decision_turn(logged: int, pi_hit: float) -> dict[str, torch.Tensor]:
    """One turn: a forced token (column 0), a decision (column 1: token 1 = hit, 2 = stand, with
    ``pi(hit) = pi_hit``), a forced closing token (column 2), then the outcome: +1 after hit, -1 after
    stand, terminated. ``Q'`` is exact for that: the outcome of each decision."""
    pi = torch.tensor([[[0.0, 0.0, 0.0, 1.0], [0.0, pi_hit, 1 - pi_hit, 0.0], [0.0, 0.0, 0.0, 1.0]]])
    outcome = 1.0 if logged == 1 else -1.0
    v_hit = pi_hit * 1.0 + (1 - pi_hit) * -1.0
    q_target = torch.tensor([[[0.0, 0.0, 0.0, v_hit], [0.0, 1.0, -1.0, 0.0], [0.0, 0.0, 0.0, outcome]]])
    return {
        "pi": pi, "q_target": q_target, "actions": torch.tensor([[3, logged, 3]]),
        "mask": torch.ones(1, 3, dtype=torch.bool), "reward": torch.tensor([outcome]),
        "terminated": torch.tensor([True]), "next_value": torch.zeros(1), "has_next": torch.tensor([False]),
    }  # fmt: skip


def _tree(ep: dict[str, torch.Tensor], turn_lambda: float = 1.0) -> torch.Tensor:
    v = (ep["pi"] * ep["q_target"]).sum(-1)
    pi_taken = taken(ep["pi"], ep["actions"])
    return td_targets(v, ep["mask"], ep["reward"], ep["terminated"], ep["next_value"], ep["has_next"], 0.9,
                      turn_lambda=turn_lambda, pi_taken=pi_taken, q_target_taken=taken(ep["q_target"], ep["actions"]))  # fmt: skip


@pytest.mark.parametrize("logged", [1, 2])
def test_tree_backup_values_the_current_policy_whatever_was_logged(logged: int) -> None:
    """With exact Q', the forced token before the decision targets the current policy's value
    (pi(hit) = 0.8: 0.8 - 0.2 = 0.6) whichever action the data logged; the lambda-return gives it the
    logged action's outcome. The decision and the closing token still target the outcome itself."""
    ep = _decision_turn(logged, pi_hit=0.8)
    outcome = 1.0 if logged == 1 else -1.0
    assert _tree(ep)[0].tolist() == pytest.approx([0.6, outcome, outcome])
    v = (ep["pi"] * ep["q_target"]).sum(-1)
    lam = td_targets(
        v, ep["mask"], ep["reward"], ep["terminated"], ep["next_value"], ep["has_next"], 0.9, turn_lambda=1.0
    )
    assert lam[0].tolist() == pytest.approx([outcome, outcome, outcome])


def test_tree_backup_by_hand_and_its_limits() -> None:
    """A policy that never makes the logged decision cuts the trace (one-step target ``V'(s^1)``); one
    that always makes it passes the outcome, as the lambda-return with lambda 1 does; in between, by
    hand, with an inexact Q'. ``turn_lambda`` scales the trace."""
    ep = _decision_turn(logged=2, pi_hit=1.0)  # never stands, stand logged
    assert _tree(ep)[0, 0].item() == pytest.approx(1.0)  # V'(s^1) = Q'(hit)
    ep = _decision_turn(logged=2, pi_hit=0.0)  # always stands
    assert _tree(ep)[0].tolist() == pytest.approx([-1.0, -1.0, -1.0])
    ep = _decision_turn(logged=1, pi_hit=0.5)
    ep["q_target"][0, 1] = torch.tensor([0.0, 0.2, -0.4, 0.0])  # inexact Q' at the decision
    # G_1 = outcome 1 (through the forced closing token); G_0 = V'(s^1) + 0.5 (G_1 - Q'(hit))
    assert _tree(ep)[0, 0].item() == pytest.approx(-0.1 + 0.5 * (1.0 - 0.2))
    assert _tree(ep, turn_lambda=0.5)[0, 0].item() == pytest.approx(-0.1 + 0.25 * (1.0 - 0.2))
    with pytest.raises(ValueError, match="both"):
        td_targets(torch.zeros(1, 3), ep["mask"], ep["reward"], ep["terminated"], ep["next_value"],
                   ep["has_next"], 0.9, pi_taken=torch.ones(1, 3))  # fmt: skip


def test_afsft_loss_uses_tree_backup_when_asked() -> None:
    ep = _decision_turn(logged=2, pi_hit=0.8)
    logits = ep["pi"].clamp(min=1e-9).log()
    q = torch.zeros_like(ep["q_target"])
    args = (logits, q, ep["q_target"], ep["actions"], ep["mask"], ep["reward"], ep["terminated"],
            ep["next_value"], ep["has_next"])  # fmt: skip
    tree = afsft_loss(*args, AFSFTConfig(trace="tree", turn_lambda=1.0))
    lam = afsft_loss(*args, AFSFTConfig(turn_lambda=1.0))
    # Q = 0 everywhere: the critic loss is the mean squared target, (0.6^2 + 1 + 1) / 3 vs 3 / 3
    assert tree.critic_loss.item() == pytest.approx((0.36 + 2.0) / 3, abs=1e-5)
    assert lam.critic_loss.item() == pytest.approx(1.0, abs=1e-5)


def test_td_targets_by_hand() -> None:
    ep = _two_turn_episode()
    vt = state_values(ep["logits"], ep["q_target"])
    t = td_targets(
        vt, ep["mask"], ep["reward"], ep["terminated"], ep["next_value"], ep["has_next"], gamma=0.5
    )
    # within turn 1: gamma_token * V'(s^1) = 1.75
    assert t[0, 0].item() == pytest.approx(1.75)
    # last token of turn 1: r + gamma * V'(next observation) = 0.5 + 0.5 * 2
    assert t[0, 1].item() == pytest.approx(1.5)
    # last token of turn 2, terminated: r only
    assert t[1, 0].item() == pytest.approx(1.0)
    assert t[1, 1].item() == 0.0  # padding


def test_truncation_bootstraps_but_termination_does_not() -> None:
    v = torch.zeros(2, 1)
    mask = torch.ones(2, 1, dtype=torch.bool)
    reward = torch.tensor([1.0, 1.0])
    next_value = torch.tensor([3.0, 3.0])
    has_next = torch.tensor([True, True])
    truncated_row = td_targets(v, mask, reward, torch.tensor([False, True]), next_value, has_next, gamma=0.9)
    assert truncated_row[0, 0].item() == pytest.approx(1.0 + 0.9 * 3.0)
    assert truncated_row[1, 0].item() == pytest.approx(1.0)
    no_next = td_targets(v, mask, reward, torch.tensor([False, False]), next_value, ~has_next, gamma=0.9)
    assert torch.allclose(no_next, torch.ones(2, 1))


def test_gamma_token_discounts_within_a_turn() -> None:
    v = torch.tensor([[0.0, 2.0, 4.0]])
    mask = torch.tensor([[True, True, True]])
    t = td_targets(
        v, mask, torch.tensor([1.0]), torch.tensor([True]), torch.zeros(1), torch.zeros(1), 0.9, 0.5
    )
    assert t.tolist() == [[1.0, 2.0, 1.0]]


def test_reward_scale() -> None:
    v = torch.zeros(1, 1)
    m = torch.ones(1, 1, dtype=torch.bool)
    t = td_targets(
        v, m, torch.tensor([2.0]), torch.tensor([True]), torch.zeros(1), torch.zeros(1), 0.9, 1.0, 0.1
    )
    assert t.item() == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("kind", "weights"),
    [
        ("binary", [1.0, 0.0, 1.0]),
        ("none", [1.0, 1.0, 1.0]),
        ("exp", [2.0, math.exp(-0.5), 2.0]),  # beta 1, clip at 2
    ],
)
def test_afsft_loss_by_hand(kind: str, weights: list[float]) -> None:
    ep = _two_turn_episode()
    cfg = AFSFTConfig(filter=kind, gamma=0.5, beta=1.0, w_max=2.0, critic_coef=0.5, turn_lambda=0.0)  # type: ignore[arg-type]
    out = afsft_loss(cfg=cfg, **ep)
    # Q(s,a) of logged tokens: 3, 1, 2. Targets: 1.75, 1.5, 1.0.
    critic = ((3 - 1.75) ** 2 + (1 - 1.5) ** 2 + (2 - 1.0) ** 2) / 3
    assert out.critic_loss.item() == pytest.approx(critic)
    # Advantages: 3 - 1.75 = 1.25, 1 - 1.5 = -0.5, 2 - 1.25 = 0.75
    logp = [math.log(0.25), math.log(0.5), math.log(0.5)]
    actor = -sum(w * lp for w, lp in zip(weights, logp, strict=True)) / 3  # normalised by logged tokens
    assert out.actor_loss.item() == pytest.approx(actor, rel=1e-6)
    assert out.loss.item() == pytest.approx(actor + 0.5 * critic, rel=1e-6)
    assert out.metrics["tokens"] == 3
    assert out.metrics["filter_pass_frac"] == pytest.approx(sum(w > 0 for w in weights) / 3)
    assert out.metrics["adv_mean"] == pytest.approx((1.25 - 0.5 + 0.75) / 3)


def test_filter_none_is_exactly_token_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g)
    actions = torch.randint(0, 11, (3, 5), generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    q = torch.randn(3, 5, 11, generator=g)
    zeros = torch.zeros(3)
    out = afsft_loss(
        logits, q, q, actions, mask, zeros, zeros.bool(), zeros, zeros.bool(), AFSFTConfig(filter="none")
    )
    ce = F.cross_entropy(logits[mask], actions[mask])
    assert torch.equal(out.actor_loss, ce) or out.actor_loss.item() == pytest.approx(ce.item(), abs=1e-6)


def test_binary_filter_passes_only_the_token_the_critic_prefers() -> None:
    g = torch.Generator().manual_seed(1)
    vocab, best = 7, 4
    logits = torch.randn(1, vocab, vocab, generator=g)
    q = torch.zeros(1, vocab, vocab)
    q[..., best] = 5.0  # the critic scores token `best` highest everywhere
    actions = torch.arange(vocab).unsqueeze(0)  # one logged step per vocabulary token
    mask = torch.ones(1, vocab, dtype=torch.bool)
    z = torch.zeros(1)
    out = afsft_loss(logits, q, q, actions, mask, z, z.bool(), z, z.bool(), AFSFTConfig(filter="binary"))
    adv = q.gather(-1, actions.unsqueeze(-1)).squeeze(-1) - state_values(logits, q)
    passed = filter_weights(adv, "binary")
    assert passed[0].tolist() == [1.0 if a == best else 0.0 for a in range(vocab)]
    assert out.metrics["filter_pass_frac"] == pytest.approx(1 / vocab)


def test_gradients_flow_to_the_right_places() -> None:
    ep = _two_turn_episode()
    logits = ep["logits"].clone().requires_grad_(True)
    q = ep["q"].clone().requires_grad_(True)
    qt = ep["q_target"].clone().requires_grad_(True)
    nv = ep["next_value"].clone().requires_grad_(True)
    out = afsft_loss(logits, q, qt, ep["actions"], ep["mask"], ep["reward"], ep["terminated"], nv,
                     ep["has_next"], AFSFTConfig())  # fmt: skip
    out.loss.backward()
    assert qt.grad is None and nv.grad is None  # targets are stop-gradient
    assert q.grad is not None and q.grad[1, 1].abs().sum() == 0  # padding gets no gradient
    assert logits.grad is not None and logits.grad[0, 1].abs().sum() == 0  # filtered-out token: no actor grad


def test_unknown_filter_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown filter"):
        filter_weights(torch.zeros(2), "bogus")  # type: ignore[arg-type]


def test_huber_critic() -> None:
    ep = _two_turn_episode()
    cfg = AFSFTConfig(gamma=0.5, huber_delta=1.0, turn_lambda=0.0)
    out = afsft_loss(cfg=cfg, **ep)
    errs = [3 - 1.75, 1 - 1.5, 2 - 1.0]
    hub = [0.5 * e * e if abs(e) <= 1 else abs(e) - 0.5 for e in errs]
    assert out.critic_loss.item() == pytest.approx(sum(hub) / 3)


def test_conservative_term_by_hand_and_its_gradient() -> None:
    ep = _two_turn_episode()
    q = ep["q"].clone().requires_grad_(True)
    pen = conservative_penalty(q, taken(q, ep["actions"]), ep["mask"])
    gaps = [math.log(math.exp(1) + math.exp(2) + math.exp(3)) - 3, math.log(1 + math.exp(4) + math.e) - 1,
            math.log(1 + math.exp(2) + math.e) - 2]  # fmt: skip
    assert pen.item() == pytest.approx(sum(gaps) / 3)
    pen.backward()
    assert q.grad is not None
    soft = torch.softmax(ep["q"][0, 0], -1) / 3
    assert q.grad[0, 0].tolist() == pytest.approx((soft - torch.tensor([0.0, 0.0, 1 / 3])).tolist())
    assert q.grad[1, 1].abs().sum() == 0  # padding
    base = afsft_loss(cfg=AFSFTConfig(gamma=0.5), **ep)
    cons = afsft_loss(cfg=AFSFTConfig(gamma=0.5, conservative=0.3), **ep)
    assert cons.critic_loss.item() == pytest.approx(base.critic_loss.item() + 0.3 * sum(gaps) / 3)
    assert cons.actor_loss.item() == base.actor_loss.item()
    assert cons.metrics["conservative_gap"] == pytest.approx(sum(gaps) / 3)
    assert "conservative_gap" not in base.metrics


@pytest.mark.parametrize("conservative", [0.0, 0.5])
def test_conservative_term_lifts_a_forced_token_above_extrapolated_values(conservative: float) -> None:
    """One state where the data always logs token 0 (return 1); the policy leaves 0.2 of its mass on
    token 1, which the data never logs there and whose Q starts a little higher (extrapolated). Plain TD
    never corrects Q(s, 1), so the logged token's advantage stays negative and the binary filter drops
    it; the conservative term lowers Q(s, 1) until the logged token passes."""
    logits = torch.tensor([[[0.8, 0.2, 1e-9]]]).log()
    q = torch.tensor([[[1.0, 1.05, 1.0]]], requires_grad=True)
    actions, mask = torch.tensor([[0]]), torch.tensor([[True]])
    one, no = torch.ones(1), torch.zeros(1, dtype=torch.bool)
    opt = torch.optim.SGD([q], lr=0.5)
    cfg = AFSFTConfig(conservative=conservative, critic_coef=1.0)  # SGD lr 0.5 sized for weight 1
    for _ in range(50):
        out = afsft_loss(logits, q, q.detach(), actions, mask, one, ~no, torch.zeros(1), no, cfg)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    out = afsft_loss(logits, q, q.detach(), actions, mask, one, ~no, torch.zeros(1), no, cfg)
    assert out.metrics["filter_pass_frac"] == (1.0 if conservative else 0.0)


def test_plain_sft_has_no_critic_loss_unless_asked() -> None:
    assert AFSFTConfig.for_filter("none").critic_coef == 0.0
    assert AFSFTConfig.for_filter("none", critic_coef=2.0).critic_coef == 2.0
    assert AFSFTConfig.for_filter("binary").critic_coef == AFSFTConfig().critic_coef == 10.0
